//! Live progress of a training run, one consumer of the run loop's events: an indicatif bar
//! on a terminal, a plain line every 10 seconds otherwise (a log file, a CI job).

use anyhow::Result;
use charrnn::io::metrics::MetricsLog;
use charrnn::train::run::{self, Checkpointer, Event, Learner, Outcome, RunConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Reporter {
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Reporter {
    pub fn new(first_step: u64, max_steps: u64) -> Reporter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(max_steps);
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} steps | {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_position(first_step);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Reporter {
            bar,
            last_line: Instant::now(),
        }
    }

    pub fn event(&mut self, e: &Event) {
        let Event::Step(s) = e else { return };
        // A classifier's validation is shown as accuracy, what its user reads.
        let val = match (s.last_accuracy, s.last_val) {
            (Some(a), _) => format!("val acc {:.2}%", 100.0 * a),
            (None, v) => format!("val {}", v.map_or("-".into(), |v| format!("{v:.4}"))),
        };
        let msg = format!(
            "epoch {:.2} | loss {:.4} | {val} | {:.1}k chars/s | lr {:.2e} | ETA {}",
            s.epoch,
            s.smoothed_loss,
            s.chars_per_s / 1000.0,
            s.report.lr,
            hms(s.eta_seconds)
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(s.step);
                bar.set_message(msg);
            }
            None if self.last_line.elapsed() >= Duration::from_secs(10) => {
                eprintln!("step {} | {msg}", s.step);
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn hms(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The library's run loop as a command shows it: the progress display and the metrics log
/// consume its events, and a signal stops it (after the step, with the state saved).
pub fn run_shown<L: Learner + ?Sized>(
    trainer: &mut L,
    val: &L::Val,
    config: &RunConfig,
    checkpoints: &mut dyn Checkpointer<L>,
    mut metrics: MetricsLog,
    signals: &super::signals::Signals,
) -> Result<Outcome> {
    let mut report = Reporter::new(trainer.progress().step, config.max_steps);
    let stop = || signals.received().is_some();
    let outcome = run::run(trainer, val, config, checkpoints, &stop, &mut |e| {
        report.event(&e);
        metrics.event(&e);
    });
    report.finish();
    if let Err(e) = metrics.finish() {
        eprintln!("charrnn: warning: {e:#}");
    }
    outcome
}
