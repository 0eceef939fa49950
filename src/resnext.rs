//! The blog's ResNeXt for CIFAR-10, with Keras's layer defaults.
//!
//! Stem conv 3x3 (64) -> BN -> ReLU; three stages of (depth - 2) / 9 bottleneck blocks with
//! grouped width f = cardinality * width * 2^stage and output 2f; stride 2 in the first block
//! of stages 2 and 3; global average pooling; dense layer without bias. Where libtorch's
//! defaults differ from Keras we follow Keras: BN eps 1e-3, momentum 0.99 (0.01 in torch
//! terms), gamma 1 and beta 0; truncated he_normal weights; TensorFlow's 'same' padding.
use crate::config::ModelConfig;
use crate::torch_ext;
use std::collections::HashSet;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// The VarStore group of conv and dense kernels: the weights Keras's `l2` regularizer applies
/// to. The builder puts them there; the optimizer, the L2 penalty, `eval` and `summary` ask
/// [`parameters`] (BatchNorm's gamma and beta stay in group 0 and get no penalty).
pub const KERNELS: usize = 1;

/// A trainable variable by name, and whether it is a kernel.
#[derive(Debug)]
pub struct Parameter {
    pub name: String,
    pub tensor: Tensor,
    pub kernel: bool,
}

/// The trainable variables of `vs`, sorted by name.
pub fn parameters(vs: &nn::VarStore) -> Vec<Parameter> {
    let variables = vs.variables_.lock().expect("the VarStore lock is never poisoned");
    // Groups are recorded per tensor, names per name: the two meet on the tensor's storage.
    let kernels: HashSet<usize> = variables
        .trainable_variables
        .iter()
        .filter(|v| v.group == KERNELS)
        .map(|v| v.tensor.data_ptr() as usize)
        .collect();
    let mut parameters: Vec<Parameter> = variables
        .named_variables
        .iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(name, t)| Parameter {
            name: name.clone(),
            tensor: t.shallow_clone(),
            kernel: kernels.contains(&(t.data_ptr() as usize)),
        })
        .collect();
    parameters.sort_by(|a, b| a.name.cmp(&b.name));
    parameters
}

/// One layer as Keras's `model.summary()` lists it: the path of its variables (e.g.
/// `stage2.block1.conv2`), what it is, and its output shape in Keras's (H, W, C) order. The
/// builder records each layer as it makes it, so `summary` cannot disagree with what trains.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub name: String,
    pub kind: String,
    pub output_shape: Vec<i64>,
}

/// Where each bottleneck block sits: its input channels, grouped width f and stride.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BlockSpec {
    stage: usize,
    index: usize,
    in_channels: i64,
    width: i64,
    stride: i64,
}

const STEM_CHANNELS: i64 = 64;
/// CIFAR-10's images are 32x32.
const IMAGE_SIZE: i64 = 32;

/// The blocks of a config, stage by stage.
fn block_specs(cfg: &ModelConfig) -> Vec<BlockSpec> {
    let blocks_per_stage = (cfg.depth - 2) / 9;
    let mut in_channels = STEM_CHANNELS;
    let mut specs = Vec::new();
    for stage in 0..3 {
        let width = (cfg.cardinality * cfg.width) as i64 * (1 << stage);
        for index in 0..blocks_per_stage {
            let stride = if stage > 0 && index == 0 { 2 } else { 1 };
            specs.push(BlockSpec { stage: stage + 1, index: index + 1, in_channels, width, stride });
            in_channels = 2 * width;
        }
    }
    specs
}

/// Builds the network under `path`: a module mapping normalised NCHW images to logits
/// (softmax is left to the loss, as cross-entropy on logits), and its layers in order. With
/// `fused`, training runs each BatchNorm that a ReLU follows as one fused op
/// ([`torch_ext::batch_norm_relu`], CPU only); inference is the same either way.
pub fn build(path: &nn::Path, cfg: &ModelConfig, fused: bool) -> (nn::SequentialT, Vec<Layer>) {
    let mut layers = Layers { list: vec![], size: IMAGE_SIZE, fused };
    let stem = conv_bn(&mut layers, &(path / "stem"), ("conv", "bn"), 3, STEM_CHANNELS, 3, 1, 1);
    let mut net = nn::seq_t().add_fn_t(move |x, train| stem.forward_relu(x, None, train));
    let specs = block_specs(cfg);
    for &spec in &specs {
        let block_path = path / format!("stage{}", spec.stage) / format!("block{}", spec.index);
        net = net.add(bottleneck(&mut layers, &block_path, spec, cfg.cardinality as i64));
    }
    let features = 2 * specs.last().expect("depth >= 11 gives blocks").width;
    layers.push(&(path / "pool"), "GlobalAveragePooling2D".into(), vec![features]);
    let fc_path = path / "fc";
    let fc = dense(&fc_path, features, cfg.num_classes as i64);
    layers.push(&fc_path, "Dense (no bias)".into(), vec![cfg.num_classes as i64]);
    (net.add_fn(|x| x.mean_dim(&[2i64, 3][..], false, Kind::Float)).add(fc), layers.list)
}

/// The layers made so far, the spatial size of the last one's output, and whether the
/// BatchNorms it makes fuse with their ReLU in training.
struct Layers {
    list: Vec<Layer>,
    size: i64,
    fused: bool,
}

impl Layers {
    fn push(&mut self, path: &nn::Path, kind: String, output_shape: Vec<i64>) {
        let name = path.components().collect::<Vec<_>>().join(".");
        self.list.push(Layer { name, kind, output_shape });
    }
}

/// Conv 1x1 (f) -> BN -> ReLU -> grouped conv 3x3 (f, stride) -> BN -> ReLU -> conv 1x1 (2f)
/// -> BN, added to the shortcut (identity, or conv 1x1 (2f, stride) -> BN when the channel
/// count changes), then ReLU.
fn bottleneck(layers: &mut Layers, path: &nn::Path, spec: BlockSpec, cardinality: i64) -> impl ModuleT {
    let BlockSpec { in_channels, width: f, stride, .. } = spec;
    let input_size = layers.size;
    let shortcut = (in_channels != 2 * f)
        .then(|| conv_bn(layers, path, ("shortcut_conv", "shortcut_bn"), in_channels, 2 * f, 1, stride, 1));
    layers.size = input_size;
    let conv1 = conv_bn(layers, path, ("conv1", "bn1"), in_channels, f, 1, 1, 1);
    let conv2 = conv_bn(layers, path, ("conv2", "bn2"), f, f, 3, stride, cardinality);
    let conv3 = conv_bn(layers, path, ("conv3", "bn3"), f, 2 * f, 1, 1, 1);
    let size = layers.size;
    layers.push(&(path / "add_relu"), "Add + ReLU".into(), vec![size, size, 2 * f]);
    nn::func_t(move |x, train| {
        let skip = match &shortcut {
            Some(projection) => projection.forward_t(x, train),
            None => x.shallow_clone(),
        };
        let residual = conv2.forward_relu(&conv1.forward_relu(x, None, train), None, train);
        conv3.forward_relu(&residual, Some(&skip), train)
    })
}

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
fn fused_state(bn: &nn::BatchNorm) -> torch_ext::BatchNormState<'_> {
    torch_ext::BatchNormState {
        gamma: bn.ws.as_ref().expect("affine BN"),
        beta: bn.bs.as_ref().expect("affine BN"),
        running_mean: &bn.running_mean,
        running_var: &bn.running_var,
        momentum: BN_MOMENTUM,
        eps: BN_EPSILON,
        instruction_set: torch_ext::InstructionSet::Best,
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

/// A convolution and its BatchNorm, named `names` under `path`, recorded in `layers`.
#[allow(clippy::too_many_arguments)]
fn conv_bn(
    layers: &mut Layers,
    path: &nn::Path,
    (conv_name, bn_name): (&str, &str),
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    groups: i64,
) -> ConvBn {
    let (conv_path, bn_path) = (path / conv_name, path / bn_name);
    // TensorFlow's 'same' output size: ceil(n / stride).
    layers.size = (layers.size + stride - 1) / stride;
    let shape = vec![layers.size, layers.size, c_out];
    let kind = match groups {
        1 => format!("Conv2D {k}x{k}/{stride}"),
        _ => format!("Conv2D {k}x{k}/{stride}, {groups} groups"),
    };
    layers.push(&conv_path, kind, shape.clone());
    layers.push(&bn_path, "BatchNormalization".into(), shape);
    ConvBn {
        conv: conv(conv_path, c_in, c_out, k, stride, groups),
        bn: batch_norm(bn_path, c_out),
        fused: layers.fused,
    }
}

impl ConvBn {
    /// `relu(conv_bn(x) + skip)`, or `relu(conv_bn(x))` without a skip: in training with the
    /// fused op when this layer was built fused, else (and in inference) as separate ops.
    fn forward_relu(&self, x: &Tensor, skip: Option<&Tensor>, train: bool) -> Tensor {
        if train && self.fused {
            return torch_ext::batch_norm_relu(&nn::Module::forward(&self.conv, x), skip, &fused_state(&self.bn));
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
fn dense(path: &nn::Path, c_in: i64, c_out: i64) -> impl ModuleT {
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
    fn forward_gives_logits_of_the_expected_shape() {
        tch::manual_seed(0);
        let cfg = ModelConfig { name: "resnext".into(), depth: 11, cardinality: 2, width: 2, num_classes: 10 };
        let vs = nn::VarStore::new(Device::Cpu);
        let (net, layers) = build(&vs.root(), &cfg, false);
        let logits = net.forward_t(&Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu)), true);
        assert_eq!(logits.size(), vec![3, 10]);
        assert!(bool::try_from(logits.isfinite().all()).unwrap());
        assert_eq!(
            layers.last().unwrap().output_shape,
            [10],
            "the last layer recorded is the one that gives the logits"
        );
    }

    #[test]
    fn the_builder_declares_every_conv_and_dense_weight_a_kernel_and_nothing_else() {
        let cfg = ModelConfig { name: "resnext".into(), depth: 11, cardinality: 2, width: 2, num_classes: 10 };
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = build(&vs.root(), &cfg, false);
        let parameters = parameters(&vs);
        let (kernels, others): (Vec<_>, Vec<_>) = parameters.iter().partition(|p| p.kernel);
        // ResNeXt-11: stem conv, 3 blocks of 3 convs, 3 projection shortcuts, the dense layer.
        assert_eq!(kernels.len(), 1 + 3 * 3 + 3 + 1, "{kernels:?}");
        assert!(kernels.iter().all(|p| [2, 4].contains(&p.tensor.dim())), "kernels are 2-D or 4-D");
        assert!(kernels.iter().any(|p| p.name == "fc.weight"));
        // The rest are BatchNorm's gamma and beta, one pair per conv.
        assert_eq!(others.len(), 2 * (kernels.len() - 1));
        assert!(others
            .iter()
            .all(|p| p.tensor.dim() == 1 && (p.name.ends_with(".weight") || p.name.ends_with(".bias"))));
    }

    #[test]
    fn folded_inference_equals_conv_then_batch_norm() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let layer =
            conv_bn(&mut Layers { list: vec![], size: 10, fused: false }, &vs.root(), ("conv", "bn"), 6, 8, 3, 2, 2);
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
        let y = torch_ext::batch_norm_relu(&x, None, &state);
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
