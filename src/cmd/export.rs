//! `charrnn export`: a checkpoint's weights in a format other tools read.

use crate::cli::{ExportArgs, ExportFormat};
use anyhow::Result;
use charrnn::io::classifier::{Loaded, load_any};
use charrnn::io::export::{write_classifier_safetensors, write_safetensors};

pub fn run(args: ExportArgs) -> Result<()> {
    let path = super::find_checkpoint(args.checkpoint.as_deref(), &args.dir)?;
    let ck = match load_any(&path)? {
        Loaded::LanguageModel(ck) => ck,
        Loaded::Classifier(ck) => {
            let (model, vocab, labels) = ck.model()?;
            match args.format {
                ExportFormat::Safetensors => {
                    write_classifier_safetensors(&model, &vocab, &labels, &args.output)?
                }
            }
            let c = &model.config;
            eprintln!(
                "charrnn: wrote {} ({}{} {}x{} classifier, pool {}, {} parameters, {} labels) from {}",
                args.output.display(),
                if c.bidirectional {
                    "bidirectional "
                } else {
                    ""
                },
                c.cell,
                c.layers,
                c.hidden,
                c.pool,
                model.param_count(),
                labels.len(),
                path.display()
            );
            return Ok(());
        }
    };
    let (model, vocab) = ck.model()?;
    match args.format {
        ExportFormat::Safetensors => write_safetensors(&model, &vocab, &args.output)?,
    }
    let c = &model.config;
    eprintln!(
        "charrnn: wrote {} ({} {}x{}, {} parameters, vocabulary {}) from {}",
        args.output.display(),
        c.cell,
        c.layers,
        c.hidden,
        model.param_count(),
        vocab.len(),
        path.display()
    );
    Ok(())
}
