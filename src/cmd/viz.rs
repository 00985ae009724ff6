//! `charrnn viz`: an HTML page of what a model sees in a text (see `io::viz_page`).

use crate::cli::VizArgs;
use anyhow::{Result, anyhow};
use charrnn::analysis::viz::{activations, check_memory};
use charrnn::fs::input_name;
use charrnn::io::model_file;
use charrnn::io::output::Output;
use charrnn::io::viz_page::{PageInfo, render};
use charrnn::text::corpus::read_utf8;
use charrnn::text::unknown::prefix;

pub fn run(args: VizArgs) -> Result<()> {
    let path = super::find_checkpoint(args.checkpoint.as_deref(), &args.dir)?;
    let output = Output::check(&args.output, &[&path, &args.file], args.force)?;
    let model_file::ModelFile {
        model, vocab, mode, ..
    } = model_file::load(&path)?;
    let source = input_name(&args.file);
    let text = read_utf8(&args.file)?;
    // Only the characters shown are checked (with --skip-unknown, the first --max-chars
    // characters the model knows are shown).
    let text = if args.skip_unknown {
        super::known_text(&vocab, mode, text, &source, true)?
    } else {
        let shown = prefix(&text, args.max_chars).to_string();
        super::known_text(&vocab, mode, shown, &source, false)?;
        text
    };
    let total = text.chars().count();
    check_memory(&model.config, total.min(args.max_chars))?;
    let a = activations(&model, &vocab, &text, mode, args.max_chars)
        .map_err(|e| anyhow!("{source}: {e}"))?;
    drop(text);
    let c = &model.config;
    let info = PageInfo {
        source: &source,
        model: &format!(
            "{} {}x{} from {}",
            c.cell,
            c.layers,
            c.hidden,
            path.display()
        ),
        total_chars: total,
    };
    let bytes = output.write_with(|f| Ok(render(&a, &vocab, &info, f)?))?;
    eprintln!(
        "charrnn: wrote {} ({} characters{}, {:.1} MB, {:.0} bytes per character); open it in a browser",
        output.describe(),
        a.chars.len(),
        if a.chars.len() < total {
            format!(" of {total}: raise --max-chars to show more")
        } else {
            String::new()
        },
        bytes as f64 / 1e6,
        bytes as f64 / a.chars.len().max(1) as f64
    );
    Ok(())
}
