//! The blog's ResNeXt for CIFAR-10, built from Keras's layers ([`crate::model::keras`]).
//!
//! Stem conv 3x3 (64) -> BN -> ReLU; three stages of (depth - 2) / 9 bottleneck blocks with
//! grouped width f = cardinality * width * 2^stage and output 2f; stride 2 in the first block
//! of stages 2 and 3; global average pooling; dense layer without bias.
use crate::config::ModelConfig;
use crate::model::keras::{dense, ConvBn};
use tch::nn::{self, ModuleT};
use tch::Kind;

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
/// ([`crate::torch_ext::fused::batch_norm_relu`], CPU only); inference is the same either way.
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
    ConvBn::new(conv_path, bn_path, (c_in, c_out), k, stride, groups, layers.fused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parameters::parameters;
    use tch::{Device, Tensor};

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
}
