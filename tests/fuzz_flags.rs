//! Property tests over the sizes a user gives as flags (issue 17): evaluation's warm-up,
//! window, streams and sample size; beam width, length and penalty; the activation page's
//! character cap and texts with markup in them; the memory estimates behind every check.
//! None may panic, and none may allocate beyond what its check estimated. Like
//! `tests/fuzz.rs`, `PROPTEST_CASES` sets a longer run.

use charrnn::analysis::eval::{self, EvalConfig, evaluate};
use charrnn::analysis::viz;
use charrnn::decode::beam::{self, BeamConfig, beam_search, greedy};
use charrnn::decode::sample::prime_text;
use charrnn::fs::{ReadLimit, read_bounded};
use charrnn::io::viz_page::{PageInfo, render};
use charrnn::nn::{CellKind, Model, ModelConfig};
use charrnn::text::unknown::{scan, without_unknown};
use charrnn::text::{Mode, Vocab, split};
use proptest::prelude::*;
use rand::SeedableRng;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn model(cell: CellKind, vocab: usize, seed: u64) -> Model {
    let mut m = Model::new(ModelConfig {
        cell,
        layers: 2,
        hidden: 5,
        vocab_size: vocab,
        dropout: 0.0,
        output_dropout: 0.0,
        weight_drop: 0.0,
    });
    m.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    m
}

fn cell() -> impl Strategy<Value = CellKind> {
    prop_oneof![
        Just(CellKind::Rnn),
        Just(CellKind::Lstm),
        Just(CellKind::Gru)
    ]
}

/// A size flag: small, around the text's length, or hostile.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..20,
        20usize..2000,
        Just(usize::MAX),
        Just(usize::MAX - 615),
        Just(100_000_000_000),
        any::<usize>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1000), failure_persistence: None, ..ProptestConfig::default() })]

    /// Any warm-up, window, stream count and sample size: no panic, an estimate that never
    /// overflows silently, and every position scored once when no sample is asked for.
    #[test]
    fn evaluation_takes_any_sizes(
        cell in cell(),
        text in "[abc \n]{1,300}",
        warmup in size(),
        window in size(),
        streams in 1usize..70,
        max_chars in proptest::option::of(size()),
        threads in 1usize..4,
    ) {
        let vocab = Vocab::from_texts(["abc \n"]);
        let m = model(cell, vocab.len(), 3);
        let tokens = split::tokens(&vocab, &split::sequences(&[text], Mode::Stream)).unwrap();
        let config = EvalConfig { streams, window: window.max(1), warmup, max_chars: max_chars.map(|m| m.max(1)), threads, ..EvalConfig::default() };
        let bytes = eval::memory_bytes(&m.config, tokens.len(), &config);
        // A window is never longer than what a stream reads: the estimate stays small.
        prop_assert!(bytes.is_some_and(|b| b < 64 << 20), "{bytes:?}");
        let stats = evaluate(&m, &tokens, &config);
        if config.max_chars.is_none() {
            prop_assert_eq!(stats.count, split::scored_positions(&tokens));
        }
        prop_assert!(stats.loss().is_finite());
    }

    /// Any beam width, length and penalty: the result is at least as probable as greedy
    /// decoding's (up to rounding), what is emitted along the way is exactly the result,
    /// and the stepper's memory was estimated.
    #[test]
    fn beam_search_takes_any_width_and_length(
        cell in cell(),
        seed in 0u64..1000,
        width in 1usize..12,
        len in 0usize..40,
        alpha in prop_oneof![Just(0.0f32), 0.0f32..2.0],
        prime in proptest::collection::vec(2u32..7, 0..4),
    ) {
        let m = model(cell, 7, seed);
        prop_assert!(beam::memory_bytes(&m.config, width).is_some());
        let config = BeamConfig { width, max_len: len, length_penalty: alpha };
        let mut emitted = Vec::new();
        let b = beam_search(&m, &prime, &config, |ids, _| { emitted.extend_from_slice(ids); Ok::<_, ()>(()) }).unwrap();
        let g = greedy(&m, &prime, len);
        prop_assert!(b.score(alpha) >= g.score(alpha) - 1e-6, "{b:?} {g:?}");
        prop_assert_eq!(&emitted, &b.ids);
        prop_assert!(b.ids.len() <= len && b.ids.iter().all(|&t| t >= 2));
    }

    /// The memory estimates take any sizes without overflowing unchecked.
    #[test]
    fn estimates_never_overflow(
        layers in prop_oneof![1usize..4, any::<usize>()],
        hidden in prop_oneof![1usize..2000, any::<usize>()],
        vocab in prop_oneof![3usize..70_000, any::<usize>()],
        width in size(),
        chars in size(),
    ) {
        let c = ModelConfig { cell: CellKind::Lstm, layers, hidden, vocab_size: vocab, dropout: 0.0, output_dropout: 0.0, weight_drop: 0.0 };
        let _ = beam::memory_bytes(&c, width);
        let _ = viz::memory_bytes(&c, chars);
        let _ = eval::memory_bytes(&c, chars, &EvalConfig { window: width.max(1), warmup: width, ..EvalConfig::default() });
    }

    /// Any text and cap on the activation page: no panic, and the page's data holds no `<`
    /// at all (so no text can close its script element or open a comment in it), and reads
    /// back as the text shown.
    #[test]
    fn activation_pages_hold_any_text(
        text in "(<!--|<script>|</script>|<|>|&|\"|\\\\|\u{2028}|[a-c\n])*",
        max_chars in prop_oneof![1usize..50, Just(usize::MAX)],
        lines in any::<bool>(),
    ) {
        let mode = if lines { Mode::Lines } else { Mode::Stream };
        let vocab = Vocab::from_texts(["<!-script>/&\"\\\u{2028}abc\n"]);
        let m = model(CellKind::Gru, vocab.len(), 1);
        let a = viz::activations(&m, &vocab, &text, mode, max_chars).unwrap();
        let info = PageInfo { source: "<!--x", model: "</script>", total_chars: text.chars().count() };
        let mut page = Vec::new();
        render(&a, &vocab, &info, &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        let start = page.find("id=\"data\">").unwrap() + "id=\"data\">".len();
        let data = &page[start..start + page[start..].find("</script>").unwrap()];
        prop_assert!(!data.contains('<'));
        let back: serde_json::Value = serde_json::from_str(data).unwrap();
        let shown: String = text.chars().take(max_chars).collect();
        prop_assert_eq!(back["text"].as_str().unwrap(), shown.as_str());
        prop_assert_eq!(back["h"].as_array().unwrap().len(), 2);
    }

    /// Unknown characters: after leaving them out none is left, and the count is right.
    #[test]
    fn unknown_characters_are_found_and_left_out(text in "\\PC{0,80}", lines in any::<bool>()) {
        let mode = if lines { Mode::Lines } else { Mode::Stream };
        let vocab = Vocab::from_texts(["abc xyz\n"]);
        let u = scan(&vocab, &text, mode);
        let kept = without_unknown(&vocab, &text, mode);
        prop_assert_eq!(scan(&vocab, &kept, mode).total(), 0);
        prop_assert_eq!(kept.chars().count() + u.total(), text.chars().count());
        if let Some(f) = u.first {
            let line = text.split('\n').nth(f.line - 1).unwrap();
            prop_assert_eq!(line.chars().nth(f.column - 1), Some(f.ch));
        }
        let _ = prime_text(mode, text, true);
    }

    /// Standard input is read up to its limit and refused beyond it, whatever the limit.
    #[test]
    fn bounded_reads(bytes in proptest::collection::vec(any::<u8>(), 0..200), limit in 0u64..300) {
        let got = read_bounded(&bytes[..], ReadLimit { max_bytes: limit });
        prop_assert_eq!(got.is_ok(), bytes.len() as u64 <= limit);
        if let Ok(b) = got {
            prop_assert_eq!(b, bytes);
        }
    }
}
