//! `charrnn sample`: stream generated text to stdout, or print the most probable
//! continuation found by beam search.

use crate::cli::SampleArgs;
use anyhow::{Result, anyhow, bail};
use charrnn::decode::beam::{BeamConfig, beam_search};
use charrnn::decode::sample::{SampleConfig, Sampler};
use charrnn::io::model_file;
use charrnn::text::Mode;
use charrnn::text::corpus::read_utf8;
use std::io::Write;

pub fn run(args: SampleArgs) -> Result<()> {
    let path = super::find_checkpoint(args.checkpoint.as_deref(), &args.dir)?;
    let model_file::ModelFile {
        model, vocab, mode, ..
    } = model_file::load(&path)?;
    let prime = match &args.prime_file {
        Some(f) if !args.prime.is_empty() => {
            bail!(
                "--prime and --prime-file {} both give a prime; pass one",
                f.display()
            )
        }
        Some(f) => read_utf8(f)?,
        None => args.prime.clone(),
    };
    let unknown =
        |e| anyhow!("the prime: {e}; the model knows only the characters of its training text");
    let mut out = std::io::stdout().lock();

    if let Some(width) = args.beam {
        if args.num > 1 {
            bail!("--beam finds one continuation; --num does not apply");
        }
        let ids = vocab.encode(&prime).map_err(unknown)?;
        let config = BeamConfig {
            width,
            max_len: args.len,
            length_penalty: args.length_penalty,
        };
        let best = beam_search(&model, &ids, &config);
        writeln!(out, "{prime}{}", vocab.decode(&best.ids))?;
        eprintln!(
            "charrnn: beam {width}: ln p = {:.3} over {} characters{}",
            best.log_prob,
            best.ids.len(),
            if best.ended {
                " and <end>"
            } else {
                " (the length limit)"
            }
        );
        return Ok(());
    }

    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let seed = now.map_or(0, |d| d.as_nanos() as u64);
        eprintln!("charrnn: seed {seed} (pass --seed {seed} to get this text again)");
        seed
    });
    let config = SampleConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        argmax: args.argmax,
        seed,
    };
    let mut sampler = Sampler::new(&model, &vocab, config);
    // In stream mode a sample can hold blank lines of its own: numbered separators show
    // where one ends. In lines mode each sample is one line.
    let separate = args.num > 1 && mode == Mode::Stream;
    for i in 0..args.num {
        if separate {
            writeln!(out, "--- sample {} of {} ---", i + 1, args.num)?;
        }
        sampler.prime(&prime).map_err(unknown)?;
        write!(out, "{prime}")?;
        // Flushed per character so that text appears as it is generated.
        sampler.generate(args.len, |c| write!(out, "{c}").and_then(|_| out.flush()))?;
        writeln!(out)?;
    }
    Ok(())
}
