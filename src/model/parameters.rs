//! The network's trainable variables by name, and which of them are conv and dense kernels: the
//! weights Keras's `l2` regularizer applies to (the optimizer, the L2 penalty, `eval` and
//! `summary` read them here).
use crate::torch_ext::foreach_norm;
use std::collections::HashSet;
use tch::nn;
use tch::Tensor;

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

/// `sum(w^2)` over `kernels` (the L2 penalty is `l2` times it) in three ops: every kernel's norm at
/// once, then the squared norm of the norms.
pub fn kernel_sum_of_squares(kernels: &[Tensor]) -> Tensor {
    tch::no_grad(|| {
        let norms = Tensor::stack(&foreach_norm(kernels), 0);
        norms.dot(&norms)
    })
}
