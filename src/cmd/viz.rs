//! `charrnn viz`: an HTML page of what a model sees in a text (see `io::viz_page`).

use crate::cli::VizArgs;
use anyhow::{Result, anyhow};
use charrnn::analysis::viz::activations;
use charrnn::io::model_file;
use charrnn::io::output::Output;
use charrnn::io::viz_page::{PageInfo, render};
use charrnn::text::corpus::read_utf8;

pub fn run(args: VizArgs) -> Result<()> {
    let path = super::find_checkpoint(args.checkpoint.as_deref(), &args.dir)?;
    let output = Output::check(&args.output, &[&path, &args.file], args.force)?;
    let model_file::ModelFile {
        model, vocab, mode, ..
    } = model_file::load(&path)?;
    let text = read_utf8(&args.file)?;
    let total = text.chars().count();
    let a = activations(&model, &vocab, &text, mode, args.max_chars).map_err(|e| {
        anyhow!(
            "{}: {e}; the model knows only the characters of its training text",
            args.file.display()
        )
    })?;
    let c = &model.config;
    let info = PageInfo {
        source: &args.file.display().to_string(),
        model: &format!(
            "{} {}x{} from {}",
            c.cell,
            c.layers,
            c.hidden,
            path.display()
        ),
        total_chars: total,
    };
    let page = render(&a, &vocab, &info);
    output.write(page.as_bytes())?;
    eprintln!(
        "charrnn: wrote {} ({} characters{}, {:.1} MB); open it in a browser",
        output.describe(),
        a.chars.len(),
        if a.chars.len() < total {
            format!(" of {total}: raise --max-chars to show more")
        } else {
            String::new()
        },
        page.len() as f64 / 1e6
    );
    Ok(())
}
