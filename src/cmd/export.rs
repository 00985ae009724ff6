//! `charrnn export`: a checkpoint's weights in a format other tools read.

use crate::cli::{ExportArgs, ExportFormat};
use anyhow::Result;
use charrnn::io::checkpoint::Checkpoint;
use charrnn::io::export::safetensors_bytes;
use charrnn::io::output::Output;

pub fn run(args: ExportArgs) -> Result<()> {
    let path = super::find_checkpoint(args.checkpoint.as_deref(), &args.dir)?;
    let output = Output::check(&args.output, &[&path], args.force)?;
    let ck = Checkpoint::load(&path)?;
    let (model, vocab) = ck.model()?;
    let bytes = match args.format {
        ExportFormat::Safetensors => safetensors_bytes(&model, &vocab, ck.data.mode)?,
    };
    output.write(&bytes)?;
    let c = &model.config;
    eprintln!(
        "charrnn: wrote {} ({} {}x{}, {} parameters, vocabulary {}) from {}",
        output.describe(),
        c.cell,
        c.layers,
        c.hidden,
        model.param_count(),
        vocab.len(),
        path.display()
    );
    Ok(())
}
