//! `resnext summary`: a Keras-style table of a config's network. The parameter counts, and
//! which weights the L2 penalty applies to, are read off the built network, so the table
//! cannot disagree with what trains.
use crate::config::ModelConfig;
use crate::model::architecture;
use crate::model::parameters::parameters;
use std::collections::HashSet;
use tch::{nn, Device};

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub name: String,
    pub kind: String,
    /// Keras's (None, H, W, C) convention.
    pub output_shape: Vec<i64>,
    pub params: i64,
    pub non_trainable: i64,
    /// Whether the layer's kernel gets the L2 penalty.
    pub l2: bool,
}

/// The layers of a freshly built network of `cfg` (on the CPU; titu1994's 90M-parameter default
/// takes a few seconds), with the parameter counts of their variables.
pub fn rows(cfg: &ModelConfig) -> Vec<SummaryRow> {
    let vs = nn::VarStore::new(Device::Cpu);
    let (_network, layers) = architecture::build(&vs.root(), cfg, false);
    let variables = vs.variables();
    let kernels: HashSet<String> = parameters(&vs).into_iter().filter(|p| p.kernel).map(|p| p.name).collect();
    layers
        .into_iter()
        .map(|layer| {
            let prefix = format!("{}.", layer.name);
            let own: Vec<(&String, &tch::Tensor)> = variables.iter().filter(|(n, _)| n.starts_with(&prefix)).collect();
            let count = |keep: &dyn Fn(&tch::Tensor) -> bool| {
                own.iter().filter(|(_, t)| keep(t)).map(|(_, t)| t.numel() as i64).sum()
            };
            SummaryRow {
                params: count(&|_| true),
                non_trainable: count(&|t| !t.requires_grad()),
                l2: own.iter().any(|(n, _)| kernels.contains(*n)),
                name: layer.name,
                kind: layer.kind,
                output_shape: layer.output_shape,
            }
        })
        .collect()
}

/// (total, trainable, non-trainable) as Keras counts them: BN moving statistics are
/// non-trainable parameters.
pub fn param_totals(rows: &[SummaryRow]) -> (i64, i64, i64) {
    let total: i64 = rows.iter().map(|r| r.params).sum();
    let non_trainable: i64 = rows.iter().map(|r| r.non_trainable).sum();
    (total, total - non_trainable, non_trainable)
}

/// Formats the table and totals the way `model.summary()` does, plus the L2-penalised count.
pub fn format(title: &str, rows: &[SummaryRow]) -> String {
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
    let rule = "_".repeat(102);
    let line = "=".repeat(102);
    let header = format!("{:<30}{:<32}{:<24}{:>12}{:>4}", "Layer", "Type", "Output Shape", "Param #", "L2");
    let mut text = format!("Model: {title}\n{rule}\n{header}\n{line}\n");
    for row in rows {
        let dims: Vec<String> = row.output_shape.iter().map(|d| d.to_string()).collect();
        let shape = format!("(None, {})", dims.join(", "));
        let l2 = if row.l2 { "yes" } else { "" };
        text.push_str(&format!("{:<30}{:<32}{:<24}{:>12}{l2:>4}\n", row.name, row.kind, shape, thousands(row.params)));
    }
    let (total, trainable, non_trainable) = param_totals(rows);
    let penalised: i64 = rows.iter().filter(|r| r.l2).map(|r| r.params).sum();
    text.push_str(&format!(
        "{line}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: {}\n\
         L2-penalised params (conv and dense kernels): {}\n{rule}\n",
        thousands(total),
        thousands(trainable),
        thousands(non_trainable),
        thousands(penalised),
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blog_model() -> ModelConfig {
        ModelConfig { name: "resnext".into(), depth: 29, cardinality: 8, width: 16, num_classes: 10 }
    }

    #[test]
    fn blog_network_has_the_keras_parameter_counts() {
        let rows = rows(&blog_model());
        assert_eq!(param_totals(&rows), (5_671_872, 5_646_656, 25_216));
        let text = format("my_resnext", &rows);
        assert!(text.contains("Total params: 5,671,872\n"), "{text}");
        assert!(text.contains("Trainable params: 5,646,656\n"));
        assert!(text.contains("Non-trainable params: 25,216\n"));
        // Every conv and the dense layer are penalised, no BatchNorm is: 5,646,656 trainable
        // minus the 2 x 12,608 BN gammas and betas.
        assert!(text.contains("L2-penalised params (conv and dense kernels): 5,621,440\n"), "{text}");
        assert!(rows.iter().all(|r| r.l2 == (r.kind.starts_with("Conv2D") || r.kind.starts_with("Dense"))));
    }

    #[test]
    fn titu1994_default_width_gives_its_published_total() {
        let cfg = ModelConfig { width: 64, ..blog_model() };
        assert_eq!(param_totals(&rows(&cfg)).0, 89_700_288);
        let shipped = crate::study::lookup::load("resnext", &[]).unwrap();
        assert_eq!(param_totals(&rows(&shipped.model)).0, 5_671_872);
    }
}
