//! `charrnn export`: a checkpoint's weights in a format other tools read.

use crate::cli::{ExportArgs, ExportFormat};
use anyhow::Result;
use charrnn::io::checkpoint::Checkpoint;
use charrnn::io::export::write_safetensors;

pub fn run(args: ExportArgs) -> Result<()> {
    let path = super::find_checkpoint(args.checkpoint.as_deref(), &args.dir)?;
    let (model, vocab) = Checkpoint::load(&path)?.model()?;
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
