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

    /// The transforms of images `start .. start + len`.
    pub fn slice(&self, start: i64, len: i64) -> Self {
        let part = |t: &Tensor| t.narrow(0, start, len);
        Transforms { theta: part(&self.theta), tx: part(&self.tx), ty: part(&self.ty), flip: part(&self.flip) }
    }

    pub fn to_device(&self, device: Device) -> Self {
        let to = |t: &Tensor| t.to_device(device);
        Transforms { theta: to(&self.theta), tx: to(&self.tx), ty: to(&self.ty), flip: to(&self.flip) }
    }
}

/// Applies one transform per image to a float batch `[B, C, H, W]`.
pub fn apply(images: &Tensor, t: &Transforms) -> Tensor {
    let (b, c, h, w) = images.size4().expect("images must be [B, C, H, W]");
    let device = images.device();
    let f64_opts = (Kind::Double, device);
    // Output pixel grid, [1, H, W]. The flip happens after the warp, so output column j reads
    // the warped column W-1-j.
    let rows = Tensor::arange(h, f64_opts).view([1, h, 1]);
    let cols = Tensor::arange(w, f64_opts).view([1, 1, w]);
    let flip = t.flip.view([b, 1, 1]);
    let cols = cols.where_self(&flip.logical_not(), &(-&cols + (w - 1) as f64));
    let (centre_r, centre_c) = (h as f64 / 2.0 + 0.5, w as f64 / 2.0 + 0.5);
    let per_image = |x: &Tensor| x.to_kind(Kind::Double).view([b, 1, 1]);
    let theta = per_image(&t.theta) * (std::f64::consts::PI / 180.0);
    let (cos, sin) = (theta.cos(), theta.sin());
    // [r, c] = R(theta) [i - c_r + tx, j - c_c + ty] + [c_r, c_c]
    let a = rows - centre_r + per_image(&t.tx);
    let d = cols - centre_c + per_image(&t.ty);
    let src_r = &cos * &a - &sin * &d + centre_r;
    let src_c = &sin * &a + &cos * &d + centre_c;
    let inside = src_r.ge(0.0) * src_r.le((h - 1) as f64) * src_c.ge(0.0) * src_c.le((w - 1) as f64);

    let r0 = src_r.floor();
    let c0 = src_c.floor();
    let fr = (&src_r - &r0).to_kind(Kind::Float).unsqueeze(1);
    let fc = (&src_c - &c0).to_kind(Kind::Float).unsqueeze(1);
    // Bilinear interpolation from the four neighbours. Indices are clamped so the gathers
    // stay in bounds; a clamped neighbour only ever gets weight 0 or lies outside (masked).
    let flat = images.view([b, c, h * w]);
    let gather = |r: &Tensor, col: &Tensor| {
        let r = r.clamp(0.0, (h - 1) as f64).to_kind(Kind::Int64);
        let col = col.clamp(0.0, (w - 1) as f64).to_kind(Kind::Int64);
        let idx = (r * w + col).view([b, 1, h * w]).expand([b, c, h * w], false);
        flat.gather(2, &idx, false).view([b, c, h, w])
    };
    let r1 = &r0 + 1.0;
    let c1 = &c0 + 1.0;
    let top = gather(&r0, &c0) * (1.0 - &fc) + gather(&r0, &c1) * &fc;
    let bottom = gather(&r1, &c0) * (1.0 - &fc) + gather(&r1, &c1) * &fc;
    let warped = top * (1.0 - &fr) + bottom * &fr;
    warped * inside.to_kind(images.kind()).unsqueeze(1)
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
            let out = apply(&image, &t).permute([0, 2, 3, 1]).contiguous();
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
        };
        let t = Transforms::random(&cfg, 4, 8, 8);
        let batch = apply(&images, &t);
        for i in 0..4 {
            let one = apply(&images.narrow(0, i, 1), &t.slice(i, 1));
            assert!(batch.narrow(0, i, 1).allclose(&one, 1e-6, 1e-6, false), "image {i}");
        }
        let theta = Vec::<f64>::try_from(&t.theta).unwrap();
        let tx = Vec::<f64>::try_from(&t.tx).unwrap();
        assert!(theta.iter().all(|x| x.abs() <= 15.0) && tx.iter().all(|x| x.abs() <= 1.0));
        assert!(tx.iter().any(|x| x.fract() != 0.0), "shifts are continuous");
    }
}
