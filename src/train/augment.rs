//! Keras `ImageDataGenerator` augmentation as batched tensor operations on the model's device.
//!
//! Per image: one affine resampling (rotation about Keras's off-centre point (H/2 + 0.5,
//! W/2 + 0.5), continuous shifts), bilinear, with every sample whose source lies outside the
//! image set to exactly 0 (scipy `mode='constant'`: no blending at the border), then a
//! horizontal flip with probability 0.5. Sample coordinates are computed in f64 as scipy
//! does, so samples that land exactly on the last row or column stay inside.
use crate::config::AugmentConfig;
use tch::{Device, Kind, Tensor};

/// One random transform per image, in Keras's units: `theta` in degrees, `tx` the row
/// (vertical) shift and `ty` the column shift in pixels, `flip` a bool.
pub struct Transforms {
    pub theta: Tensor,
    pub tx: Tensor,
    pub ty: Tensor,
    pub flip: Tensor,
}

impl Transforms {
    /// Draws `n` transforms from torch's CPU generator, as `get_random_transform` does:
    /// theta ~ U(-rot, rot), tx ~ U(-h_range, h_range) * H, ty ~ U(-w_range, w_range) * W.
    pub fn random(cfg: &AugmentConfig, n: i64, height: i64, width: i64) -> Self {
        let uniform = |range: f64| (Tensor::rand([n], (Kind::Double, Device::Cpu)) * 2.0 - 1.0) * range;
        let flip = if cfg.horizontal_flip {
            Tensor::rand([n], (Kind::Double, Device::Cpu)).lt(0.5)
        } else {
            Tensor::zeros([n], (Kind::Bool, Device::Cpu))
        };
        Transforms {
            theta: uniform(cfg.rotation_range),
            tx: uniform(cfg.height_shift_range * height as f64),
            ty: uniform(cfg.width_shift_range * width as f64),
            flip,
        }
    }

    /// The transforms of images `start .. start + len` (for the tests).
    #[cfg(test)]
    pub fn slice(&self, start: i64, len: i64) -> Self {
        let part = |t: &Tensor| t.narrow(0, start, len);
        Transforms { theta: part(&self.theta), tx: part(&self.tx), ty: part(&self.ty), flip: part(&self.flip) }
    }
}

/// The transforms of a pass ready to apply to `height` x `width` images on one device:
/// per image the numbers the warp needs, worked out once on the CPU in f64, and the pixel
/// grid, built once. Warping a batch is then about twenty tensor ops whatever its size.
pub struct Warp {
    /// `[N, 6, 1, 1]` f64: cos(theta), sin(theta), tx, ty, and the flip as a column sign `s`
    /// and offset `k`: output column j reads warped column j' with j' - c_c = s j + k.
    params: Tensor,
    /// Output row index minus the centre row, `[1, H, 1]`, and column index, `[1, 1, W]`.
    rows: Tensor,
    cols: Tensor,
    centre: (f64, f64),
    /// (W - 1, H - 1): the last valid (x, y) sample coordinate.
    last: Tensor,
    zero: Tensor,
    /// (2 / (W - 1), 2 / (H - 1)): pixel coordinates to grid_sampler's [-1, 1].
    to_unit: Tensor,
}

impl Warp {
    pub fn new(t: &Transforms, height: i64, width: i64, device: Device) -> Self {
        let (h, w) = (height as f64, width as f64);
        // Keras's off-centre rotation point.
        let centre = (h / 2.0 + 0.5, w / 2.0 + 0.5);
        let theta = t.theta.to_kind(Kind::Double) * (std::f64::consts::PI / 180.0);
        let flip = t.flip.to_kind(Kind::Double);
        // The flip happens after the warp: column j reads warped column W-1-j. As j' - c_c:
        // without a flip j - c_c, with one -j + (W - 1 - c_c); both exact in f64.
        let sign = 1.0 - &flip * 2.0;
        let offset = &flip * (w - 1.0) - centre.1;
        let columns = [theta.cos(), theta.sin(), t.tx.to_kind(Kind::Double), t.ty.to_kind(Kind::Double), sign, offset];
        let params = Tensor::stack(&columns, 1).unsqueeze(-1).unsqueeze(-1).to_device(device);
        let f64_opts = (Kind::Double, device);
        Warp {
            params,
            rows: (Tensor::arange(height, f64_opts) - centre.0).view([1, height, 1]),
            cols: Tensor::arange(width, f64_opts).view([1, 1, width]),
            centre,
            last: Tensor::from_slice(&[w - 1.0, h - 1.0]).to_device(device),
            zero: Tensor::zeros([2], f64_opts),
            to_unit: Tensor::from_slice(&[2.0 / (w - 1.0), 2.0 / (h - 1.0)]).to_device(device),
        }
    }

    /// Warps the float batch `images` `[B, C, H, W]`, which holds images `start .. start + B`
    /// of the transforms.
    pub fn apply(&self, images: &Tensor, start: i64) -> Tensor {
        let batch = images.size()[0];
        let p = self.params.narrow(0, start, batch).unbind(1);
        let [cos, sin, tx, ty, sign, offset] = [0, 1, 2, 3, 4, 5].map(|i| &p[i]);
        // [r, c] = R(theta) [i - c_r + tx, j' - c_c + ty] + [c_r, c_c], each product and sum in
        // the order Keras's scipy call rounds them, so coordinates that land exactly on the
        // first or last row or column stay inside.
        let a = &self.rows + tx;
        let d = offset.addcmul(&self.cols, sign) + ty;
        let src_r = (cos * &a - sin * &d) + self.centre.0;
        let src_c = (sin * &a + cos * &d) + self.centre.1;
        let grid = Tensor::stack(&[src_c, src_r], -1);
        // scipy's mode='constant': a sample whose source lies outside is exactly 0, with no
        // blending at the border (grid_sampler's zero padding would blend).
        let inside = grid.clamp_tensor(Some(&self.zero), Some(&self.last)).eq_tensor(&grid).all_dim(-1, false);
        let unit = (grid * &self.to_unit - 1.0).to_kind(images.kind());
        // Bilinear; align_corners maps -1 and 1 to the first and last pixel centres.
        let warped = images.grid_sampler_2d(&unit, 0, 0, true);
        warped * inside.unsqueeze(1)
    }
}

/// DeVries and Taylor's cutout: a square of zeros in each (normalised, augmented) image, its
/// centre drawn uniformly over the pixels, clipped at the border. As in their code, a side L
/// covers rows `y - L/2 .. y + L/2` (integer division, end excluded) around the drawn pixel y.
pub struct Cutout {
    /// `[N, 2, 1, 1]`: the middle row and column of each square (a half-integer: the middle of
    /// an even span of pixels).
    middles: Tensor,
    /// Half the square's side in pixels, minus a half: `|row - middle| <= half` is inside.
    half: f64,
    rows: Tensor,
    cols: Tensor,
}

impl Cutout {
    /// Draws `n` squares of side `side` from torch's CPU generator.
    pub fn random(side: usize, n: i64, height: i64, width: i64, device: Device) -> Self {
        let k = (side / 2) as f64;
        let draw = |size: i64| Tensor::randint(size, [n], (Kind::Int64, Device::Cpu)).to_kind(Kind::Float) - 0.5;
        let middles = Tensor::stack(&[draw(height), draw(width)], 1).view([n, 2, 1, 1]).to_device(device);
        let f32_opts = (Kind::Float, device);
        Cutout {
            middles,
            half: k - 0.5,
            rows: Tensor::arange(height, f32_opts).view([1, height, 1]),
            cols: Tensor::arange(width, f32_opts).view([1, 1, width]),
        }
    }

    /// Cuts the squares of images `start .. start + B` out of the batch `images`.
    pub fn apply(&self, images: &Tensor, start: i64) -> Tensor {
        let middles = self.middles.narrow(0, start, images.size()[0]).unbind(1);
        let (rows, cols) = ((&self.rows - &middles[0]).abs(), (&self.cols - &middles[1]).abs());
        // Inside the square: both distances (the larger one) within half the side.
        let inside = rows.maximum(&cols).le(self.half);
        images.masked_fill(&inside.unsqueeze(1), 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{floats, keras_reference};

    #[test]
    fn reproduces_every_keras_golden_case() {
        let reference = keras_reference("augment_affine.json");
        let cases = reference["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 18);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let shape: Vec<i64> = case["shape"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            let (h, w, c) = (shape[0], shape[1], shape[2]);
            let image = Tensor::from_slice(&floats(&case["input"])).view([1, h, w, c]).permute([0, 3, 1, 2]);
            let p = &case["params"];
            let scalar = |key: &str| Tensor::from_slice(&[p[key].as_f64().unwrap()]);
            let t = Transforms {
                theta: scalar("theta"),
                tx: scalar("tx"),
                ty: scalar("ty"),
                flip: Tensor::from_slice(&[p["flip_horizontal"].as_bool().unwrap()]),
            };
            let out = Warp::new(&t, h, w, Device::Cpu).apply(&image, 0).permute([0, 2, 3, 1]).contiguous();
            let got = Vec::<f32>::try_from(out.flatten(0, -1)).unwrap();
            let want = floats(&case["expected"]);
            let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(max_diff <= 1e-4, "{name}: max |diff| {max_diff}");
        }
    }

    #[test]
    fn a_batch_applies_each_image_its_own_transform() {
        tch::manual_seed(3);
        let images = Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu));
        let cfg = AugmentConfig {
            horizontal_flip: true,
            width_shift_range: 0.125,
            height_shift_range: 0.125,
            rotation_range: 15.0,
            cutout: 0,
        };
        let t = Transforms::random(&cfg, 4, 8, 8);
        let warp = Warp::new(&t, 8, 8, Device::Cpu);
        let batch = warp.apply(&images, 0);
        for i in 0..4 {
            let one = warp.apply(&images.narrow(0, i, 1), i);
            let alone = Warp::new(&t.slice(i, 1), 8, 8, Device::Cpu).apply(&images.narrow(0, i, 1), 0);
            assert!(batch.narrow(0, i, 1).equal(&one) && one.equal(&alone), "image {i}");
        }
        let theta = Vec::<f64>::try_from(&t.theta).unwrap();
        let tx = Vec::<f64>::try_from(&t.tx).unwrap();
        assert!(theta.iter().all(|x| x.abs() <= 15.0) && tx.iter().all(|x| x.abs() <= 1.0));
        assert!(tx.iter().any(|x| x.fract() != 0.0), "shifts are continuous");
    }

    #[test]
    fn cutout_zeroes_one_square_per_image_clipped_at_the_border() {
        tch::manual_seed(5);
        let n = 200;
        let cutout = Cutout::random(8, n, 32, 32, Device::Cpu);
        let images = Tensor::ones([n, 3, 32, 32], (Kind::Float, Device::Cpu));
        let out = cutout.apply(&images, 0);
        let middles = Vec::<f32>::try_from(cutout.middles.flatten(0, -1)).unwrap();
        for i in 0..n as usize {
            // The drawn pixel y = middle + 0.5; rows y-4 .. y+3 (and the same for columns), clipped.
            let (y, x) = ((middles[2 * i] + 0.5) as i64, (middles[2 * i + 1] + 0.5) as i64);
            assert!((0..32).contains(&y) && (0..32).contains(&x), "centres are pixels");
            let span = |c: i64| ((c - 4).max(0), (c + 4).min(32));
            let ((y1, y2), (x1, x2)) = (span(y), span(x));
            let zeros = f64::try_from(out.get(i as i64).eq(0.0).sum(Kind::Float)).unwrap();
            assert_eq!(zeros, (3 * (y2 - y1) * (x2 - x1)) as f64, "image {i}: square at ({y}, {x})");
            let square = out.get(i as i64).narrow(1, y1, y2 - y1).narrow(2, x1, x2 - x1);
            assert_eq!(f64::try_from(square.abs().sum(Kind::Float)).unwrap(), 0.0);
        }
        // Some squares lie partly outside: clipped, never wrapped.
        assert!(middles.iter().any(|&m| m < 3.0) && middles.iter().any(|&m| m > 28.0));
        // Slices start where they should.
        assert!(cutout.apply(&images.narrow(0, 7, 5), 7).equal(&out.narrow(0, 7, 5)));
    }
}
