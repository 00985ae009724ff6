//! `charrnn sample`: stream generated text to stdout.

use crate::cli::SampleArgs;
use anyhow::{Result, anyhow};
use charrnn::decode::sample::{SampleConfig, Sampler};
use charrnn::io::checkpoint::Checkpoint;
use std::io::Write;

pub fn run(args: SampleArgs) -> Result<()> {
    let path = super::find_checkpoint(args.checkpoint.as_deref(), &args.dir)?;
    let (model, vocab) = Checkpoint::load(&path)?.model()?;
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |d| d.as_nanos() as u64)
    });
    let config = SampleConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        argmax: args.argmax,
        seed,
    };
    let mut sampler = Sampler::new(&model, &vocab, config);
    let mut out = std::io::stdout().lock();
    for _ in 0..args.num {
        sampler.prime(&args.prime).map_err(|e| {
            anyhow!("--prime: {e}; the model knows only the characters of its training text")
        })?;
        write!(out, "{}", args.prime)?;
        // Flushed per character so that text appears as it is generated.
        sampler.generate(args.len, |c| write!(out, "{c}").and_then(|_| out.flush()))?;
        writeln!(out)?;
    }
    Ok(())
}
