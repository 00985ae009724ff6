//! `charrnn sample`: stream generated text to stdout, or print the most probable
//! continuation found by beam search.

use crate::cli::SampleArgs;
use anyhow::{Result, anyhow, bail};
use charrnn::decode::beam::{self, BeamConfig, beam_search};
use charrnn::decode::sample::{SampleConfig, Sampler, prime_text};
use charrnn::io::model_file;
use charrnn::text::Mode;
use charrnn::text::corpus::read_utf8;
use std::io::Write;
use std::time::{Duration, Instant};

/// When a long beam search first says how far it is, and how often after that.
const BEAM_FIRST_NOTE: Duration = Duration::from_secs(3);
const BEAM_NOTE_EVERY: Duration = Duration::from_secs(10);

pub fn run(args: SampleArgs) -> Result<()> {
    args.check_flags().map_err(anyhow::Error::msg)?;
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
        Some(f) => prime_text(mode, read_utf8(f)?, true),
        None => prime_text(mode, args.prime.clone(), false),
    }
    .map_err(anyhow::Error::msg)?;
    let unknown =
        |e| anyhow!("the prime: {e}; the model knows only the characters of its training text");
    let mut out = std::io::stdout().lock();

    if let Some(width) = args.beam {
        let ids = vocab.encode(&prime).map_err(unknown)?;
        beam::check_memory(&model.config, width)?;
        let config = BeamConfig {
            width,
            max_len: args.len,
            length_penalty: args.length_penalty.unwrap_or(0.0),
        };
        write!(out, "{prime}")?;
        out.flush()?;
        // Characters are printed as soon as every candidate agrees on them; a long search
        // also says on stderr how far it is.
        let (start, mut next_note, mut printed) = (Instant::now(), BEAM_FIRST_NOTE, 0usize);
        let best = beam_search(&model, &ids, &config, |fixed, steps| {
            if !fixed.is_empty() {
                printed += fixed.len();
                write!(out, "{}", vocab.decode(fixed))?;
                out.flush()?;
            }
            if start.elapsed() >= next_note && steps < args.len {
                next_note = start.elapsed() + BEAM_NOTE_EVERY;
                let rate = steps as f64 / start.elapsed().as_secs_f64();
                eprintln!(
                    "charrnn: beam {width}: {steps} of at most {} characters searched ({rate:.0}/s, about {:.0} s left at most); {printed} printed, the rest as soon as the candidates agree on it",
                    args.len,
                    (args.len - steps) as f64 / rate.max(1e-9)
                );
            }
            Ok::<_, std::io::Error>(())
        })?;
        writeln!(out)?;
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

    // Greedy decoding draws nothing at random: there is no seed to report.
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let seed = now.map_or(0, |d| d.as_nanos() as u64);
        if !args.argmax {
            eprintln!("charrnn: seed {seed} (pass --seed {seed} to get this text again)");
        }
        seed
    });
    let d = SampleConfig::default();
    let config = SampleConfig {
        temperature: args.temperature.unwrap_or(0.8),
        top_k: args.top_k.unwrap_or(d.top_k),
        top_p: args.top_p.unwrap_or(d.top_p),
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
