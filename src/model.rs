//! The blog's ResNeXt for CIFAR-10, with Keras's layer defaults.
//!
//! Stem conv 3x3 (64) -> BN -> ReLU; three stages of (depth - 2) / 9 bottleneck blocks with
//! grouped width f = cardinality * width * 2^stage and output 2f; stride 2 in the first block
//! of stages 2 and 3; global average pooling; dense layer without bias. Where libtorch's
//! defaults differ from Keras we follow Keras: BN eps 1e-3, momentum 0.99 (0.01 in torch
//! terms), gamma 1 and beta 0; truncated he_normal weights; TensorFlow's 'same' padding.
use crate::config::ModelConfig;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// Where each bottleneck block sits: its input channels, grouped width f and stride.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockSpec {
    pub stage: usize,
    pub index: usize,
    pub in_channels: i64,
    pub width: i64,
    pub stride: i64,
}

pub const STEM_CHANNELS: i64 = 64;

/// The blocks of a config, stage by stage.
pub fn block_specs(cfg: &ModelConfig) -> Vec<BlockSpec> {
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

/// Builds the network under `path` and returns it as a module mapping normalised NCHW
/// images to logits (softmax is left to the loss, as cross-entropy on logits).
pub fn resnext(path: &nn::Path, cfg: &ModelConfig) -> nn::SequentialT {
    let stem = path / "stem";
    let mut net = nn::seq_t().add(conv_bn(&stem, "conv", "bn", 3, STEM_CHANNELS, 3, 1, 1)).add_fn(relu_in_place);
    for spec in block_specs(cfg) {
        let block_path = path / format!("stage{}", spec.stage) / format!("block{}", spec.index);
        net = net.add(bottleneck(&block_path, spec, cfg.cardinality as i64));
    }
    let features = 2 * block_specs(cfg).last().expect("depth >= 11 gives blocks").width;
    let fc = dense(&(path / "fc"), features, cfg.num_classes as i64);
    net.add_fn(|x| x.mean_dim(&[2i64, 3][..], false, Kind::Float)).add(fc)
}

/// Conv 1x1 (f) -> BN -> ReLU -> grouped conv 3x3 (f, stride) -> BN -> ReLU -> conv 1x1 (2f)
/// -> BN, added to the shortcut (identity, or conv 1x1 (2f, stride) -> BN when the channel
/// count changes), then ReLU.
fn bottleneck(path: &nn::Path, spec: BlockSpec, cardinality: i64) -> impl ModuleT {
    let BlockSpec { in_channels, width: f, stride, .. } = spec;
    let shortcut =
        (in_channels != 2 * f).then(|| conv_bn(path, "shortcut_conv", "shortcut_bn", in_channels, 2 * f, 1, stride, 1));
    let residual = nn::seq_t()
        .add(conv_bn(path, "conv1", "bn1", in_channels, f, 1, 1, 1))
        .add_fn(relu_in_place)
        .add(conv_bn(path, "conv2", "bn2", f, f, 3, stride, cardinality))
        .add_fn(relu_in_place)
        .add(conv_bn(path, "conv3", "bn3", f, 2 * f, 1, 1, 1));
    nn::func_t(move |x, train| {
        let skip = match &shortcut {
            Some(projection) => projection.forward_t(x, train),
            None => x.shallow_clone(),
        };
        relu_in_place(&(residual.forward_t(x, train) + skip))
    })
}

/// ReLU overwriting its input: every ReLU here follows a BatchNorm, a folded convolution or an
/// addition, none of which needs its output for the backward pass, so this saves a buffer and
/// a pass over the activations.
fn relu_in_place(x: &Tensor) -> Tensor {
    x.shallow_clone().relu_()
}

pub const BN_EPSILON: f64 = 1e-3;

/// Keras `BatchNormalization()`: momentum 0.99 (torch 0.01), epsilon 1e-3, gamma 1, beta 0.
pub fn batch_norm(path: nn::Path, channels: i64) -> nn::BatchNorm {
    let config = nn::BatchNormConfig {
        eps: BN_EPSILON,
        momentum: 0.01,
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(path, channels, config)
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
    let weight = path.var("weight", &[c_out, c_in / groups, k, k], nn::Init::Const(0.0));
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
}

#[allow(clippy::too_many_arguments)]
fn conv_bn(
    path: &nn::Path,
    conv_name: &str,
    bn_name: &str,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    groups: i64,
) -> ConvBn {
    ConvBn { conv: conv(path / conv_name, c_in, c_out, k, stride, groups), bn: batch_norm(path / bn_name, c_out) }
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
    let weight = path.var("weight", &[c_out, c_in], nn::Init::Const(0.0));
    he_normal_(&weight, c_in as f64);
    nn::func_t(move |x, _train| x.matmul(&weight.tr()))
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

/// One line of the Keras-style summary table.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub name: String,
    pub kind: String,
    /// Keras's (None, H, W, C) convention.
    pub output_shape: Vec<i64>,
    pub params: i64,
    pub non_trainable: i64,
}

/// The layers of a config with their output shapes and parameter counts, worked out from
/// the architecture alone (no weights are allocated, so titu1994's 90M-parameter default
/// prints instantly).
pub fn summary(cfg: &ModelConfig) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    let mut size = 32;
    let conv_row = |name: String, c_in: i64, c_out: i64, k: i64, stride: i64, groups: i64, out: i64| SummaryRow {
        name,
        kind: if groups > 1 {
            format!("Conv2D {k}x{k}/{stride}, {groups} groups")
        } else {
            format!("Conv2D {k}x{k}/{stride}")
        },
        output_shape: vec![out, out, c_out],
        params: c_out * (c_in / groups) * k * k,
        non_trainable: 0,
    };
    let bn_row = |name: String, c: i64, out: i64| SummaryRow {
        name,
        kind: "BatchNormalization".into(),
        output_shape: vec![out, out, c],
        params: 4 * c,
        non_trainable: 2 * c,
    };
    rows.push(conv_row("stem.conv".into(), 3, STEM_CHANNELS, 3, 1, 1, size));
    rows.push(bn_row("stem.bn".into(), STEM_CHANNELS, size));
    for spec in block_specs(cfg) {
        let prefix = format!("stage{}.block{}", spec.stage, spec.index);
        let BlockSpec { in_channels, width: f, stride, .. } = spec;
        let out = size / stride;
        if in_channels != 2 * f {
            rows.push(conv_row(format!("{prefix}.shortcut_conv"), in_channels, 2 * f, 1, stride, 1, out));
            rows.push(bn_row(format!("{prefix}.shortcut_bn"), 2 * f, out));
        }
        rows.push(conv_row(format!("{prefix}.conv1"), in_channels, f, 1, 1, 1, size));
        rows.push(bn_row(format!("{prefix}.bn1"), f, size));
        rows.push(conv_row(format!("{prefix}.conv2"), f, f, 3, stride, cfg.cardinality as i64, out));
        rows.push(bn_row(format!("{prefix}.bn2"), f, out));
        rows.push(conv_row(format!("{prefix}.conv3"), f, 2 * f, 1, 1, 1, out));
        rows.push(bn_row(format!("{prefix}.bn3"), 2 * f, out));
        rows.push(SummaryRow {
            name: format!("{prefix}.add_relu"),
            kind: "Add + ReLU".into(),
            output_shape: vec![out, out, 2 * f],
            params: 0,
            non_trainable: 0,
        });
        size = out;
    }
    let features = rows.last().expect("rows").output_shape[2];
    rows.push(SummaryRow {
        name: "pool".into(),
        kind: "GlobalAveragePooling2D".into(),
        output_shape: vec![features],
        params: 0,
        non_trainable: 0,
    });
    let classes = cfg.num_classes as i64;
    rows.push(SummaryRow {
        name: "fc".into(),
        kind: "Dense (no bias)".into(),
        output_shape: vec![classes],
        params: features * classes,
        non_trainable: 0,
    });
    rows
}

/// (total, trainable, non-trainable) as Keras counts them: BN moving statistics are
/// non-trainable parameters.
pub fn param_totals(rows: &[SummaryRow]) -> (i64, i64, i64) {
    let total: i64 = rows.iter().map(|r| r.params).sum();
    let non_trainable: i64 = rows.iter().map(|r| r.non_trainable).sum();
    (total, total - non_trainable, non_trainable)
}

/// The same three totals read off a built VarStore.
pub fn var_store_totals(vs: &nn::VarStore) -> (i64, i64, i64) {
    let total: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    let trainable: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    (total, trainable, total - trainable)
}

/// Formats the table and totals the way `model.summary()` does.
pub fn format_summary(title: &str, rows: &[SummaryRow]) -> String {
    let thousands = |n: i64| {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        out
    };
    let line = "=".repeat(98);
    let mut text = format!(
        "Model: {title}\n{}\n{:<30}{:<32}{:<24}{:>12}\n{line}\n",
        "_".repeat(98),
        "Layer",
        "Type",
        "Output Shape",
        "Param #"
    );
    for row in rows {
        let dims: Vec<String> = row.output_shape.iter().map(|d| d.to_string()).collect();
        let shape = format!("(None, {})", dims.join(", "));
        text.push_str(&format!("{:<30}{:<32}{:<24}{:>12}\n", row.name, row.kind, shape, thousands(row.params)));
    }
    let (total, trainable, non_trainable) = param_totals(rows);
    text.push_str(&format!(
        "{line}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: {}\n{}\n",
        thousands(total),
        thousands(trainable),
        thousands(non_trainable),
        "_".repeat(98)
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Experiment;
    use serde_json::Value;
    use tch::Device;

    fn blog_model() -> ModelConfig {
        ModelConfig { name: "resnext".into(), depth: 29, cardinality: 8, width: 16, num_classes: 10 }
    }

    fn reference(name: &str) -> Value {
        let path = format!("{}/../shared/keras_reference/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap()
    }

    fn floats(v: &Value) -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    }

    fn shape(v: &Value) -> Vec<i64> {
        v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
    }

    #[test]
    fn blog_network_has_the_keras_parameter_counts() {
        let rows = summary(&blog_model());
        assert_eq!(param_totals(&rows), (5_671_872, 5_646_656, 25_216));
        let text = format_summary("my_resnext", &rows);
        assert!(text.contains("Total params: 5,671,872\n"), "{text}");
        assert!(text.contains("Trainable params: 5,646,656\n"));
        assert!(text.contains("Non-trainable params: 25,216\n"));
        // The built network holds exactly what the table says.
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = resnext(&vs.root(), &blog_model());
        assert_eq!(var_store_totals(&vs), (5_671_872, 5_646_656, 25_216));
    }

    #[test]
    fn titu1994_default_width_gives_its_published_total() {
        let cfg = ModelConfig { width: 64, ..blog_model() };
        assert_eq!(param_totals(&summary(&cfg)).0, 89_700_288);
        let shipped =
            Experiment::load(&format!("{}/experiments/resnext.json", env!("CARGO_MANIFEST_DIR")), &[]).unwrap();
        assert_eq!(param_totals(&summary(&shipped.model)).0, 5_671_872);
    }

    #[test]
    fn forward_gives_logits_of_the_expected_shape() {
        tch::manual_seed(0);
        let cfg = ModelConfig { name: "resnext".into(), depth: 11, cardinality: 2, width: 2, num_classes: 10 };
        let vs = nn::VarStore::new(Device::Cpu);
        let net = resnext(&vs.root(), &cfg);
        let logits = net.forward_t(&Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu)), true);
        assert_eq!(logits.size(), vec![3, 10]);
        assert!(bool::try_from(logits.isfinite().all()).unwrap());
    }

    #[test]
    fn folded_inference_equals_conv_then_batch_norm() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = conv_bn(&vs.root(), "conv", "bn", 6, 8, 3, 2, 2);
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
        let reference = reference("tf_same_padding.json");
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
        let reference = reference("tf_same_padding.json");
        let bn_ref = &reference["batch_normalization"];
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
}
