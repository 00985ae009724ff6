//! `charrnn train --task classify`: read labelled lines, build or restore a classifier, and
//! run the library's training loop with the progress display, metrics and run directory of
//! a language model.

use crate::cli::TrainArgs;
use crate::cmd::progress::run_shown;
use anyhow::{Result, bail};
use charrnn::io::classifier::{ClassifierRun, Loaded, load_any};
use charrnn::io::metrics::MetricsLog;
use charrnn::io::rundir::Claim;
use charrnn::text::labeled::{Known, LabelFormat, LabeledData};
use charrnn::train::TrainConfig;
use charrnn::train::classify::ClassWeights;
use charrnn::train::classify::setup::{self, describe_weights};
use charrnn::train::recipe;
use charrnn::train::report;
use charrnn::train::run::StopReason;
use std::path::PathBuf;

pub fn train(args: TrainArgs) -> Result<()> {
    let ck = match &args.resume {
        Some(p) => match load_any(p)? {
            Loaded::Classifier(ck) => Some(ck),
            Loaded::LanguageModel(_) => bail!(
                "{} is a language model's checkpoint; resume it without --task classify",
                p.display()
            ),
        },
        None => None,
    };
    if let (Some(_), Some(flag)) = (&ck, args.fixed_by_checkpoint()) {
        bail!("{flag} is fixed by the checkpoint being resumed; leave it out with --resume");
    }
    let paths: Vec<PathBuf> = match (&ck, args.corpus.is_empty()) {
        (_, false) => args.corpus.clone(),
        (Some(ck), true) => ck.data.sources.iter().map(PathBuf::from).collect(),
        (None, true) => bail!("no data given: usage is `charrnn train <file> --task classify`"),
    };
    let out = match (&args.out, &args.resume) {
        (Some(o), _) => o.clone(),
        (None, Some(r)) => charrnn::fs::parent_dir(r).to_path_buf(),
        (None, None) => PathBuf::from("checkpoints"),
    };
    let resumed_from = ck
        .as_ref()
        .zip(args.resume.as_deref())
        .map(|(c, p)| c.resumed(p));
    let claim = Claim::new(&out, resumed_from, args.force)?;

    // A resumed run reads its data as the checkpoint records; a new one as the flags say.
    let restored = ck.as_ref().map(|c| c.restore()).transpose()?;
    let (data, dropped) = match (&ck, &restored) {
        (Some(c), Some(r)) => c.data.reload(&r.labels, &r.vocab)?,
        _ => {
            let format = args.format.unwrap_or(LabelFormat::Fasttext);
            let max_len = args.seq_len.unwrap_or(setup::MAX_LEN);
            let seed = args.seed.unwrap_or(TrainConfig::default().seed);
            let val = args.val_fraction.unwrap_or(0.1);
            LabeledData::load(&paths, format, val, seed, max_len, Known::Fresh)?
        }
    };
    let c = data.labels.len();
    for line in data.describe(dropped) {
        eprintln!("charrnn: {line}");
    }
    let class_weights = match &ck {
        Some(ck) => ck.class_weights,
        None => args.class_weights.unwrap_or(ClassWeights::None),
    };
    eprintln!(
        "charrnn: {}",
        describe_weights(class_weights, &data.train.counts(c))
    );

    let (mut trainer, eval_every_saved) = match (ck, restored) {
        (Some(ck), Some(r)) => {
            let mut config = ck.training.config;
            config.lr.base = args.lr.unwrap_or(config.lr.base);
            let (weights, n) = (ck.weights(), ck.data.train_examples);
            let t = setup::resumed(&data, r.model, r.optimizer, config, weights, ck.progress, n)?;
            (t, Some(ck.training.eval_every))
        }
        _ => {
            let model = args.classifier_config(data.vocab.len(), c);
            let config = args.classifier_train_config(super::default_threads, model.hidden);
            let t = setup::fresh(&data, model, config, class_weights, args.forget_bias)?;
            (t, None)
        }
    };
    let batches = trainer.batches_per_epoch() as u64;
    let eval_every = args
        .eval_every
        .or(eval_every_saved)
        .unwrap_or_else(|| recipe::eval_every(batches, None));
    let (epochs, steps, limit) = (args.epochs, args.max_steps, args.time_limit);
    let mut run_config = recipe::run_config(epochs, steps, limit, batches, eval_every, 0);
    // The early stop watches the loss, which a classifier's growing confidence raises while
    // its accuracy still improves: it trains for the length it is given.
    run_config.stop_when_overfitting = false;
    eprintln!("charrnn: {}", trainer.describe(data.vocab.len()));

    let mut dir = ClassifierRun {
        claim: claim.into_plain()?,
        vocab: data.vocab.clone(),
        labels: data.labels.clone(),
        data: data.info.clone(),
        eval_every,
        class_weights,
    };
    let every = (eval_every / 5).max(1);
    let metrics = MetricsLog::open(&out, &dir.claim.run, |r| dir.claim.keeps(r), every)?;
    let signals = super::signals::Signals::install()?;
    let outcome = run_shown(
        &mut trainer,
        &data.val,
        &run_config,
        &mut dir,
        metrics,
        &signals,
    )?;
    let (latest, best) = (dir.claim.latest(), dir.claim.best());
    if let Some(line) = report::diverged(&outcome.reason, &latest) {
        bail!("{line}");
    }
    let interrupted = outcome.reason == StopReason::Interrupted;
    let kept = if best.is_file() { &best } else { &latest };
    eprintln!("charrnn: {}", trainer.describe_end(&outcome, kept));
    if let (true, Some(signal)) = (interrupted, signals.received()) {
        eprintln!(
            "charrnn: saved {}; resume with `charrnn train --task classify --resume {}`",
            latest.display(),
            latest.display()
        );
        drop(dir);
        std::process::exit(signal.exit_code());
    }
    Ok(())
}
