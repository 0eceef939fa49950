//! The Keras layer kit the network is built from, where libtorch's defaults differ from Keras's
//! and we follow Keras: BatchNormalization (momentum 0.99, epsilon 1e-3, gamma 1, beta 0),
//! bias-free convolutions with TensorFlow's 'same' padding and truncated he_normal weights, a
//! convolution and its BatchNorm (folded into one convolution in inference, fused with the ReLU
//! after it in training when asked), and a bias-free dense layer. Conv and dense kernels go into
//! the VarStore group the L2 penalty reads ([`crate::model::parameters::KERNELS`]).
use crate::model::parameters::KERNELS;
use crate::torch_ext::fused;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// ReLU overwriting its input: every ReLU here follows a BatchNorm, a folded convolution or an
/// addition, none of which needs its output for the backward pass, so this saves a buffer and
/// a pass over the activations.
fn relu_in_place(x: &Tensor) -> Tensor {
    x.shallow_clone().relu_()
}

pub const BN_EPSILON: f64 = 1e-3;
/// Keras's BatchNorm momentum: `moving = moving * 0.99 + batch * 0.01` (torch calls 0.01 the momentum).
pub const BN_MOMENTUM: f64 = 0.99;

/// Keras `BatchNormalization()`: momentum 0.99 (torch 0.01), epsilon 1e-3, gamma 1, beta 0.
pub fn batch_norm(path: nn::Path, channels: i64) -> nn::BatchNorm {
    let config = nn::BatchNormConfig {
        eps: BN_EPSILON,
        // 1 - BN_MOMENTUM, written exactly (1.0 - 0.99 is 0.010000000000000009).
        momentum: 0.01,
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(path, channels, config)
}

/// A Keras BatchNorm's variables and constants as the fused op takes them.
fn fused_state(bn: &nn::BatchNorm) -> fused::BatchNormState<'_> {
    fused::BatchNormState {
        gamma: bn.ws.as_ref().expect("affine BN"),
        beta: bn.bs.as_ref().expect("affine BN"),
        running_mean: &bn.running_mean,
        running_var: &bn.running_var,
        momentum: BN_MOMENTUM,
        eps: BN_EPSILON,
        instruction_set: fused::InstructionSet::Best,
    }
}

/// A bias-free convolution with TensorFlow 'same' padding and he_normal weights.
#[derive(Debug)]
pub struct Conv {
    pub weight: Tensor,
    kernel: i64,
    stride: i64,
    groups: i64,
}

pub fn conv(path: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, groups: i64) -> Conv {
    let weight = path.set_group(KERNELS).var("weight", &[c_out, c_in / groups, k, k], nn::Init::Const(0.0));
    he_normal_(&weight, (k * k * c_in / groups) as f64);
    Conv { weight, kernel: k, stride, groups }
}

impl Conv {
    /// The convolution with the given weight (this layer's, or a folded one) and bias.
    fn apply(&self, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let size = x.size();
        let (k, stride) = (self.kernel, self.stride);
        let (top, bottom) = tf_same_padding(size[2], k, stride);
        let (left, right) = tf_same_padding(size[3], k, stride);
        if top == bottom && left == right {
            x.conv2d(weight, bias, [stride, stride], [top, left], [1, 1], self.groups)
        } else {
            x.constant_pad_nd([left, right, top, bottom]).conv2d(
                weight,
                bias,
                [stride, stride],
                [0, 0],
                [1, 1],
                self.groups,
            )
        }
    }
}

impl nn::Module for Conv {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.apply(x, &self.weight, None)
    }
}

/// A convolution followed by BatchNorm. In training the BatchNorm uses batch statistics and
/// updates its moving averages. In inference it is folded into the convolution: weights
/// scaled by gamma / sqrt(var + eps) and a bias beta - mean * gamma / sqrt(var + eps), the
/// same function with one pass over the activations instead of two.
#[derive(Debug)]
pub struct ConvBn {
    conv: Conv,
    bn: nn::BatchNorm,
    /// Whether training fuses the BatchNorm with the ReLU that follows it ([`Self::forward_relu`]).
    fused: bool,
}

impl ConvBn {
    /// A convolution and its BatchNorm (Keras's defaults); with `fused`, training runs the
    /// BatchNorm and the ReLU after it as one op ([`ConvBn::forward_relu`]).
    pub fn new(
        conv_path: nn::Path,
        bn_path: nn::Path,
        (c_in, c_out): (i64, i64),
        k: i64,
        stride: i64,
        groups: i64,
        fused: bool,
    ) -> Self {
        ConvBn { conv: conv(conv_path, c_in, c_out, k, stride, groups), bn: batch_norm(bn_path, c_out), fused }
    }
    /// `relu(conv_bn(x) + skip)`, or `relu(conv_bn(x))` without a skip: in training with the
    /// fused op when this layer was built fused, else (and in inference) as separate ops.
    pub fn forward_relu(&self, x: &Tensor, skip: Option<&Tensor>, train: bool) -> Tensor {
        if train && self.fused {
            return fused::batch_norm_relu(&nn::Module::forward(&self.conv, x), skip, &fused_state(&self.bn));
        }
        let y = self.forward_t(x, train);
        relu_in_place(&match skip {
            Some(skip) => y + skip,
            None => y,
        })
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            return self.bn.forward_t(&nn::Module::forward(&self.conv, x), true);
        }
        let (gamma, beta) = (self.bn.ws.as_ref().expect("affine BN"), self.bn.bs.as_ref().expect("affine BN"));
        let scale = gamma / (&self.bn.running_var + BN_EPSILON).sqrt();
        let weight = &self.conv.weight * scale.view([-1, 1, 1, 1]);
        let bias = beta - &self.bn.running_mean * &scale;
        self.conv.apply(x, &weight, Some(&bias))
    }
}

/// Keras `Dense(units, use_bias=False, kernel_initializer='he_normal')`.
pub fn dense(path: &nn::Path, c_in: i64, c_out: i64) -> impl ModuleT {
    let weight = path.set_group(KERNELS).var("weight", &[c_out, c_in], nn::Init::Const(0.0));
    he_normal_(&weight, c_in as f64);
    nn::func_t(move |x, _train| x.linear::<Tensor>(&weight, None))
}

/// TensorFlow's 'same' rule for one dimension: out = ceil(n / s), total padding
/// max((out - 1) s + k - n, 0), the smaller half before. For a 3x3 stride-2 conv on an even
/// input that is 0 before and 1 after, unlike a symmetric padding of 1.
pub fn tf_same_padding(n: i64, k: i64, stride: i64) -> (i64, i64) {
    let out = (n + stride - 1) / stride;
    let total = ((out - 1) * stride + k - n).max(0);
    (total / 2, total - total / 2)
}

/// Keras he_normal: a normal cut at two standard deviations, scaled so that the realised
/// standard deviation is sqrt(2 / fan_in). Drawn by inverting the normal CDF on the truncated
/// range, from torch's CPU generator (so `tch::manual_seed` gives the same weights on every
/// device).
fn he_normal_(weight: &Tensor, fan_in: f64) {
    const TRUNCATED_STD: f64 = 0.879_625_661_034_239_8; // std of N(0,1) cut at +-2
    let (lo, hi) = (0.022_750_131_948_179_195, 0.977_249_868_051_820_8); // Phi(-2), Phi(2)
    let u = Tensor::rand(weight.size(), (Kind::Double, tch::Device::Cpu)) * (hi - lo) + lo;
    let z = (u * 2.0 - 1.0).erfinv() * std::f64::consts::SQRT_2;
    let std = (2.0 / fan_in).sqrt() / TRUNCATED_STD;
    tch::no_grad(|| weight.shallow_clone().copy_(&(z * std).to_kind(weight.kind()).to_device(weight.device())));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{floats, keras_reference, numbers};
    use serde_json::Value;
    use tch::Device;

    fn shape(v: &Value) -> Vec<i64> {
        numbers(v).into_iter().map(|x| x as i64).collect()
    }

    #[test]
    fn folded_inference_equals_conv_then_batch_norm() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = ConvBn::new(vs.root() / "conv", vs.root() / "bn", (6, 8), 3, 2, 2, false);
        let x = Tensor::randn([4, 6, 10, 10], (Kind::Float, Device::Cpu));
        for _ in 0..50 {
            let _ = layer.forward_t(&(&x * 3.0 + 1.0), true); // move the moving averages away from 0 and 1
        }
        tch::no_grad(|| {
            let _ = layer.bn.ws.as_ref().unwrap().shallow_clone().uniform_(0.5, 1.5);
            let _ = layer.bn.bs.as_ref().unwrap().shallow_clone().uniform_(-1.0, 1.0);
        });
        let folded = layer.forward_t(&x, false);
        let unfolded = layer.bn.forward_t(&nn::Module::forward(&layer.conv, &x), false);
        let diff = f64::try_from((folded - unfolded).abs().max()).unwrap();
        assert!(diff < 1e-4, "max diff {diff}");
    }

    #[test]
    fn he_normal_is_truncated_with_the_keras_std() {
        tch::manual_seed(1);
        let w = Tensor::zeros([512, 512, 3, 3], (Kind::Float, Device::Cpu));
        let fan_in = 512.0 * 9.0;
        he_normal_(&w, fan_in);
        let std = f64::try_from(w.std(true)).unwrap();
        let max = f64::try_from(w.abs().max()).unwrap();
        let want = (2.0f64 / fan_in).sqrt();
        assert!((std / want - 1.0).abs() < 0.01, "std {std} vs {want}");
        assert!(max <= 2.0 * want / 0.879_625_661_034_239_8 + 1e-6, "max {max}");
        assert!(max > 1.9 * want / 0.879_625_661_034_239_8, "max {max}: the tails should reach the cut");
    }

    #[test]
    fn tf_same_padding_matches_tensorflow() {
        let reference = keras_reference("tf_same_padding.json");
        for case in reference["conv2d"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let (k, s) = (case["kernel_size"].as_i64().unwrap(), case["strides"].as_i64().unwrap());
            let input = &case["input_nhwc"];
            let x = Tensor::from_slice(&floats(&input["data"]))
                .view(shape(&input["shape"]).as_slice())
                .permute([0, 3, 1, 2]);
            let kernel = &case["kernel_hwio"];
            let w = Tensor::from_slice(&floats(&kernel["data"]))
                .view(shape(&kernel["shape"]).as_slice())
                .permute([3, 2, 0, 1]);
            let c_in = w.size()[1];
            let c_out = w.size()[0];
            let vs = nn::VarStore::new(Device::Cpu);
            let layer = conv(vs.root() / "c", c_in, c_out, k, s, 1);
            tch::no_grad(|| vs.variables()["c.weight"].shallow_clone().copy_(&w));
            let y = nn::Module::forward(&layer, &x).permute([0, 2, 3, 1]).contiguous();
            let want = &case["output_nhwc"];
            assert_eq!(y.size(), shape(&want["shape"]), "{name}");
            let got = Vec::<f32>::try_from(y.flatten(0, -1)).unwrap();
            let max_diff = got.iter().zip(floats(&want["data"])).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(max_diff < 1e-4, "{name}: max diff {max_diff}");
            let pad = &case["implied_padding"];
            let n = x.size()[2];
            assert_eq!(
                tf_same_padding(n, k, s),
                (pad["top"].as_i64().unwrap(), pad["bottom"].as_i64().unwrap()),
                "{name}"
            );
        }
    }

    #[test]
    fn batch_norm_matches_keras_training_step() {
        let bn_ref = keras_reference("batch_normalization.json");
        assert_eq!(bn_ref["momentum"].as_f64(), Some(0.99));
        assert_eq!(bn_ref["epsilon"].as_f64(), Some(0.001));
        let example = &bn_ref["train_step_example"];
        let input = &example["input_nhwc"];
        let x =
            Tensor::from_slice(&floats(&input["data"])).view(shape(&input["shape"]).as_slice()).permute([0, 3, 1, 2]);
        let c = x.size()[1];
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = batch_norm(vs.root() / "bn", c);
        let nhwc = |t: Tensor| Vec::<f32>::try_from(t.permute([0, 2, 3, 1]).contiguous().flatten(0, -1)).unwrap();
        let close = |got: Vec<f32>, want: &Value, what: &str| {
            let want = if want.is_object() { floats(&want["data"]) } else { floats(want) };
            let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(max_diff < 1e-5, "{what}: {got:?} vs {want:?}");
        };
        close(nhwc(bn.forward_t(&x, true)), &example["output_training_true"], "training output");
        close(Vec::<f32>::try_from(&bn.running_mean).unwrap(), &example["moving_mean_after"], "moving mean");
        close(Vec::<f32>::try_from(&bn.running_var).unwrap(), &example["moving_variance_after"], "moving variance");
        close(nhwc(bn.forward_t(&x, false)), &example["output_training_false_after"], "inference output");
    }

    #[test]
    fn fused_batch_norm_relu_matches_keras_training_step_followed_by_relu() {
        let example = &keras_reference("batch_normalization.json")["train_step_example"];
        let input = &example["input_nhwc"];
        let x =
            Tensor::from_slice(&floats(&input["data"])).view(shape(&input["shape"]).as_slice()).permute([0, 3, 1, 2]);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = batch_norm(vs.root() / "bn", x.size()[1]);
        let state = fused_state(&bn);
        // The Keras example is [4, 2, 2, 3]: channels-last strides of those sizes, as the op wants them.
        let y = fused::batch_norm_relu(&x, None, &state);
        let got = Vec::<f32>::try_from(y.permute([0, 2, 3, 1]).contiguous().flatten(0, -1)).unwrap();
        let want: Vec<f32> = floats(&example["output_training_true"]["data"]).iter().map(|v| v.max(0.0)).collect();
        let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(got.contains(&0.0) && got.iter().any(|&v| v > 0.0), "the example has both signs");
        assert!(max_diff(&got, &want) < 1e-5, "{got:?} vs {want:?}");
        for (tensor, key) in [(&bn.running_mean, "moving_mean_after"), (&bn.running_var, "moving_variance_after")] {
            let (got, want) = (Vec::<f32>::try_from(tensor).unwrap(), floats(&example[key]));
            assert!(max_diff(&got, &want) < 1e-5, "{key}: {got:?} vs {want:?}");
        }
    }
}
