//! The lines a training run prints about itself: what it trains, what it starts from, and
//! how it ended. Text only (the command prints them), so that what a user reads is decided
//! here, next to the run it describes.

use crate::nn::ModelConfig;
use crate::text::Mode;
use crate::text::corpus::CorpusInfo;
use crate::train::run::{OVERFIT_MARGIN, OVERFIT_VALIDATIONS, Outcome, StopReason};
use crate::train::trainer::Trainer;

/// `run 3f9c…: lstm 2x256, 3,4M parameters, vocabulary 67 | … windows per epoch`.
pub fn header(run: &str, t: &Trainer, vocab_len: usize, info: &CorpusInfo) -> String {
    let (c, config) = (&t.model.config, &t.config);
    let val = match &info.val_file {
        Some(f) => format!("{} validation chars of {f}", info.val_chars),
        None => format!("{} validation chars", info.val_chars),
    };
    format!(
        "run {run}: {} {}x{}, {} parameters, vocabulary {vocab_len} | {} train / {val}, {} mode | batch {} x {} steps, {} threads ({}), {} windows per epoch",
        c.cell,
        c.layers,
        c.hidden,
        t.model.param_count(),
        info.train_chars,
        info.mode,
        config.batch,
        config.seq_len,
        match t.world().size() {
            1 => config.shards().to_string(),
            n => format!("{n} ranks x {}", config.shards() / n),
        },
        match config.precision {
            crate::kernels::Precision::F32 => format!("{} kernels", crate::kernels::isa().name()),
            p => format!(
                "{} kernels, {} products",
                crate::kernels::isa().name(),
                p.describe()
            ),
        },
        t.batches().windows
    )
}

/// What a fine-tuned run starts from: the checkpoint `source` (at `step`), what it takes
/// from its model (see [`inherited`]), and the characters of this corpus that model never
/// saw (`new`), which get fresh weights.
pub fn fine_tune(
    source: &str,
    step: u64,
    from: &ModelConfig,
    from_mode: Mode,
    given: &Rates,
    mode: Option<Mode>,
    new: &[char],
) -> String {
    let mut line = format!(
        "starting from the weights of {source} (step {step}) with a fresh optimizer and schedule; {}",
        inherited(from, from_mode, given, mode)
    );
    if !new.is_empty() {
        let list: Vec<String> = new.iter().map(|c| format!("{c:?}")).collect();
        line.push_str(&format!(
            "; {} new characters get fresh weights: {}",
            new.len(),
            list.join(" ")
        ));
    }
    line
}

/// The rates a fine-tuned run may set anew (`--dropout`, `--output-dropout`,
/// `--weight-drop`); `None`: the model's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub dropout: Option<f32>,
    pub output_dropout: Option<f32>,
    pub weight_drop: Option<f32>,
}

/// What a fine-tuned run takes from the model it starts from (`from`, trained in
/// `from_mode`): its shape always; its rates and mode unless given. Dropout is always
/// named, the rates that are off by default only when the model has them.
pub fn inherited(from: &ModelConfig, from_mode: Mode, rates: &Rates, mode: Option<Mode>) -> String {
    let mut taken = vec![format!("{} {}x{}", from.cell, from.layers, from.hidden)];
    let mut given = Vec::new();
    for (name, has, set, always) in [
        ("dropout", from.dropout, rates.dropout, true),
        (
            "output dropout",
            from.output_dropout,
            rates.output_dropout,
            false,
        ),
        ("weight drop", from.weight_drop, rates.weight_drop, false),
    ] {
        match set {
            Some(r) => given.push(format!("{name} {r}")),
            None if always || has > 0.0 => taken.push(format!("{name} {has}")),
            None => {}
        }
    }
    match mode {
        None => taken.push(format!("{from_mode} mode")),
        Some(m) => given.push(format!("{m} mode")),
    }
    let mut line = format!("takes {} from the model", taken.join(", "));
    if given.is_empty() {
        line.push_str(" (flags of the same names change all but the shape)");
    } else {
        line.push_str(&format!("; {} as given", given.join(" and ")));
    }
    line
}

/// `resuming at step 20, epoch 0.87` and, for a branch (`branched_from`: the run it
/// continues, `None` for a run without id), that it is a new run in `dir`.
pub fn resuming(t: &Trainer, branched_from: Option<Option<&str>>, dir: &str) -> String {
    let from = match branched_from {
        Some(run) => format!(
            " (a new run in {dir}, branched from {})",
            // Checked when its checkpoint was read: letters, digits, - and _.
            run.unwrap_or("a run without id")
        ),
        None => String::new(),
    };
    format!(
        "resuming at step {}, epoch {:.2}{from}",
        t.progress.step,
        t.epoch_fraction()
    )
}

/// How a run that did not diverge ended (`best`: the file of the best model), and why it
/// stopped early if it did.
pub fn ended(outcome: &Outcome, t: &Trainer, best: &str) -> Vec<String> {
    let best_val = t.progress.best_val_loss;
    let loss = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.4}"));
    let mut lines = vec![format!(
        "{} at step {} (epoch {:.2}) after {:.1}s, {:.0} chars/s; validation loss {} ; best {} -> {best}",
        if outcome.reason == StopReason::Interrupted {
            "interrupted"
        } else {
            "stopped"
        },
        t.progress.step,
        t.epoch_fraction(),
        outcome.wall_seconds,
        outcome.chars_per_s(),
        outcome.last_val.map_or("n/a".into(), |v| format!(
            "{v:.4} nats/char ({:.4} bits/char)",
            v / std::f64::consts::LN_2
        )),
        loss(best_val),
    )];
    if outcome.reason == StopReason::Overfitting {
        lines.push(format!(
            "stopped early: the last {OVERFIT_VALIDATIONS} validation losses were each more than {:.0}% above the best ({}); more training would not bring it back (--epochs or --max-steps train in full)",
            100.0 * OVERFIT_MARGIN,
            loss(best_val),
        ));
    }
    lines
}

/// For a run that diverged: what went wrong and which checkpoint is left (`latest`: the
/// file the run writes its latest state to); `None` for any other ending.
pub fn diverged(reason: &StopReason, latest: &std::path::Path) -> Option<String> {
    let StopReason::Diverged {
        error,
        rolled_back_to,
    } = reason
    else {
        return None;
    };
    let kept = match rolled_back_to {
        Some(s) => format!(
            "the last good checkpoint is {} (step {s}), which was not changed",
            latest.display()
        ),
        None => "no checkpoint was written".into(),
    };
    Some(format!("{error}; {kept}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::CellKind;

    #[test]
    fn a_fine_tuned_run_says_what_it_takes() {
        let from = ModelConfig {
            cell: CellKind::Gru,
            layers: 2,
            hidden: 64,
            vocab_size: 10,
            dropout: 0.25,
            output_dropout: 0.0,
            weight_drop: 0.0,
        };
        let line = inherited(&from, Mode::Lines, &Rates::default(), None);
        assert!(
            line.contains("gru 2x64, dropout 0.25, lines mode from the model (flags"),
            "{line}"
        );
        let rates = Rates {
            dropout: Some(0.0),
            ..Rates::default()
        };
        let line = inherited(&from, Mode::Lines, &rates, Some(Mode::Stream));
        assert!(
            line.contains("takes gru 2x64 from")
                && line.contains("dropout 0 and stream mode as given"),
            "{line}"
        );
        // The rates that are off by default are named when the model has them.
        let regularised = ModelConfig {
            weight_drop: 0.3,
            ..from
        };
        let line = inherited(&regularised, Mode::Lines, &Rates::default(), None);
        assert!(
            line.contains("dropout 0.25, weight drop 0.3, lines mode") && !line.contains("output"),
            "{line}"
        );
        let rates = Rates {
            weight_drop: Some(0.0),
            output_dropout: Some(0.1),
            ..Rates::default()
        };
        let line = inherited(&regularised, Mode::Lines, &rates, None);
        assert!(
            line.contains("dropout 0.25, lines mode from")
                && line.contains("output dropout 0.1 and weight drop 0 as given"),
            "{line}"
        );
        let line = fine_tune(
            "a.json",
            7,
            &from,
            Mode::Stream,
            &Rates::default(),
            None,
            &['Z', '4'],
        );
        assert!(
            line.contains("(step 7)")
                && line.ends_with("2 new characters get fresh weights: 'Z' '4'"),
            "{line}"
        );
    }
}
