//! The conventions and bounds of issue 17 on the real binary: `-` for standard input, flags
//! that another flag makes meaningless, sizes from flags checked or cut to the input,
//! unknown characters located by line and column, beam search that prints as it goes, the
//! activation page's numbers, `score` with a stream-mode model, `bench` with no corpus.

mod common;
use common::*;
use std::io::{BufRead, Read};

/// A small stream-mode model on `common::TEXT`, in `dir/m`.
fn stream_model(dir: &TempDir) -> String {
    let o = train(dir, "m", &["--max-steps", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    dir.path().join("m/best.json").display().to_string()
}

/// A small lines-mode model on a list of names, in `dir/names`.
fn lines_model(dir: &TempDir) -> String {
    let names = [
        "Marion", "Maria", "Martin", "Anna", "Arno", "Mona", "Nora", "Tim",
    ];
    let text: String = names
        .iter()
        .cycle()
        .take(200)
        .map(|n| format!("{n}\n"))
        .collect();
    std::fs::write(dir.path().join("names.txt"), text).unwrap();
    let o = charrnn()
        .current_dir(dir.path())
        .args(["train", "names.txt", "--mode", "lines", "--dir", "names"])
        .args(["--hidden", "16", "--max-steps", "30", "--batch-size", "8"])
        .args(["--seq-len", "8", "--sample-len", "0", "--threads", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    dir.path().join("names/best.json").display().to_string()
}

fn with_stdin(dir: &TempDir, args: &[&str], input: &str) -> std::process::Output {
    charrnn()
        .current_dir(dir.path())
        .args(args)
        .write_stdin(input)
        .output()
        .unwrap()
}

/// `-` reads standard input in `score`, `eval`, `viz` and `--prime-file`; `/dev/stdin` as a
/// pipe is refused with a pointer to `-`.
#[test]
fn a_dash_reads_standard_input() {
    let dir = TempDir::new().unwrap();
    let names = lines_model(&dir);
    let o = with_stdin(
        &dir,
        &["score", "-", "--checkpoint", &names],
        "Marion\nAnna\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("\tMarion\t") && out.contains("\tAnna\t"),
        "{out}"
    );
    assert!(stderr(&o).contains("of standard input"), "{}", stderr(&o));
    // The same lines from a file give the same scores.
    std::fs::write(dir.path().join("two.txt"), "Marion\nAnna\n").unwrap();
    let f = run(&dir, &["score", "two.txt", "--checkpoint", &names]);
    assert_eq!(stdout(&f), out);

    let stream = stream_model(&dir);
    let e = with_stdin(&dir, &["eval", "-", "--checkpoint", &stream], common::TEXT);
    assert!(e.status.success(), "{}", stderr(&e));
    assert!(
        stdout(&e).starts_with("standard input: loss "),
        "{}",
        stdout(&e)
    );
    let v = with_stdin(
        &dir,
        &["viz", "-", "--checkpoint", &stream, "-o", "p.html"],
        "the fox",
    );
    assert!(v.status.success(), "{}", stderr(&v));
    let s = with_stdin(
        &dir,
        &["sample", "--checkpoint", &stream, "--prime-file", "-"],
        "the lazy",
    );
    assert!(s.status.success(), "{}", stderr(&s));
    assert!(stdout(&s).starts_with("the lazy"), "{}", stdout(&s));

    // Training reads its text twice and records its path: `-` is refused with the reason.
    let t = with_stdin(&dir, &["train", "-", "--dir", "t"], common::TEXT);
    assert_one_line_error(&t, "save standard input to a file");

    // A named pipe (what /dev/stdin is under a shell pipe) is refused, pointing to `-`.
    #[cfg(unix)]
    {
        let fifo = dir.path().join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(ok.success());
        let o = run(
            &dir,
            &["score", fifo.to_str().unwrap(), "--checkpoint", &names],
        );
        assert_one_line_error(&o, "pass - (standard input)");
    }
}

/// A prime file written by an editor ends in a newline: a lines-mode model takes its one
/// line; two lines are refused. A stream-mode model keeps the newline as text.
#[test]
fn a_prime_file_ending_in_a_newline() {
    let dir = TempDir::new().unwrap();
    let names = lines_model(&dir);
    std::fs::write(dir.path().join("prime.txt"), "Ma\n").unwrap();
    let args = [
        "sample",
        "--checkpoint",
        &names,
        "--prime-file",
        "prime.txt",
        "--seed",
        "1",
        "--num",
        "3",
    ];
    let o = run(&dir, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("Ma")), "{lines:?}");
    let beam = run(
        &dir,
        &[
            "sample",
            "--checkpoint",
            &names,
            "--prime-file",
            "prime.txt",
            "--beam",
            "3",
        ],
    );
    assert!(beam.status.success(), "{}", stderr(&beam));
    assert!(stdout(&beam).starts_with("Ma"));
    std::fs::write(dir.path().join("two.txt"), "Ma\nAn\n").unwrap();
    let o = run(
        &dir,
        &["sample", "--checkpoint", &names, "--prime-file", "two.txt"],
    );
    assert_one_line_error(&o, "line break after \"Ma\"");
}

/// `eval` and `viz` refuse a text with a character the model never saw, naming its line
/// and column; `--skip-unknown` leaves such characters out and counts them.
#[test]
fn unknown_characters_by_line_and_column() {
    let dir = TempDir::new().unwrap();
    let stream = stream_model(&dir);
    let text = format!("{}the fox\nthe dog ran 2 miles, 9 times\n", common::TEXT);
    std::fs::write(dir.path().join("odd.txt"), &text).unwrap();
    let o = run(&dir, &["eval", "odd.txt", "--checkpoint", &stream]);
    assert_one_line_error(&o, "odd.txt:4:13: character '2' (U+0032)");
    assert!(
        stderr(&o).contains(
            "3 unknown characters in all: ',' (U+002C) ×1, '2' (U+0032) ×1, '9' (U+0039) ×1"
        ),
        "{}",
        stderr(&o)
    );
    let o = run(
        &dir,
        &["eval", "odd.txt", "--checkpoint", &stream, "--skip-unknown"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("left out 3 characters of odd.txt"));
    let o = run(&dir, &["viz", "odd.txt", "--checkpoint", &stream]);
    assert_one_line_error(&o, "odd.txt:4:13: character '2'");
    let o = run(
        &dir,
        &["viz", "odd.txt", "--checkpoint", &stream, "--skip-unknown"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Only the characters shown are checked.
    let o = run(
        &dir,
        &[
            "viz",
            "odd.txt",
            "--checkpoint",
            &stream,
            "--max-chars",
            "50",
            "--force",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The validation split has nothing to skip.
    let o = run(&dir, &["eval", "--checkpoint", &stream, "--skip-unknown"]);
    assert_one_line_error(&o, "--skip-unknown applies to a file");
}

/// `eval --warmup` and `--window` of any size: cut to the text, never wrapped, never spun,
/// never a huge allocation; every position is scored once.
#[test]
fn eval_sizes_are_bounded() {
    let dir = TempDir::new().unwrap();
    let stream = stream_model(&dir);
    std::fs::write(dir.path().join("t.txt"), common::TEXT.repeat(30)).unwrap();
    let scored = |extra: &[&str]| {
        let mut args = vec!["eval", "t.txt", "--checkpoint", &stream, "--json"];
        args.extend(extra);
        let o = charrnn()
            .current_dir(dir.path())
            .args(&args)
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        (
            v["chars_scored"].as_u64().unwrap(),
            v["loss_nats_per_char"].as_f64().unwrap(),
        )
    };
    let (n, loss) = scored(&[]);
    // Every character and the `<end>` after the text.
    assert_eq!(n as usize, common::TEXT.chars().count() * 30 + 1);
    for extra in [
        &["--warmup", "18446744073709551615"][..],
        &["--warmup", "18446744073709551000"],
        &["--warmup", "100000000000", "--window", "100000000000"],
        &["--window", "18446744073709551615", "--streams", "1"],
    ] {
        let (m, l) = scored(extra);
        assert_eq!(m, n, "{extra:?}");
        assert!((l - loss).abs() < 0.05 * loss, "{extra:?}: {l} vs {loss}");
    }
}

/// Flags that another flag makes meaningless are refused with one line naming both;
/// greedy decoding prints no seed.
#[test]
fn flags_that_change_nothing_are_refused() {
    let dir = TempDir::new().unwrap();
    let stream = stream_model(&dir);
    let sample = |extra: &[&str]| {
        let mut args = vec!["sample", "--checkpoint", &stream, "--len", "5"];
        args.extend(extra);
        run(&dir, &args)
    };
    for (extra, needle) in [
        (
            &["--beam", "2", "--temperature", "0.5"][..],
            "--temperature has no effect with --beam",
        ),
        (
            &["--beam", "2", "--top-k", "3"],
            "--top-k has no effect with --beam",
        ),
        (
            &["--beam", "2", "--top-p", "0.9"],
            "--top-p has no effect with --beam",
        ),
        (
            &["--beam", "2", "--argmax"],
            "--argmax has no effect with --beam",
        ),
        (
            &["--beam", "2", "--seed", "3"],
            "--seed has no effect with --beam",
        ),
        (
            &["--length-penalty", "0.7"],
            "--length-penalty applies only to --beam",
        ),
        (
            &["--argmax", "--top-k", "3"],
            "--top-k has no effect with --argmax",
        ),
        (
            &["--argmax", "--temperature", "2"],
            "--temperature has no effect with --argmax",
        ),
    ] {
        assert_one_line_error(&sample(extra), needle);
    }
    let o = sample(&["--argmax"]);
    assert!(o.status.success());
    assert!(!stderr(&o).contains("seed"), "{}", stderr(&o));
    assert!(sample(&[]).status.success() && stderr(&sample(&[])).contains("--seed"));

    for (extra, needle) in [
        (
            &["--lr-schedule", "epochs", "--lr-tail", "0.5"][..],
            "--lr-tail shapes the cosine schedule",
        ),
        (
            &["--lr-schedule", "epochs", "--lr-warmup", "0.1"],
            "--lr-warmup shapes the cosine schedule",
        ),
        (
            &["--lr-decay", "0.9"],
            "--lr-decay applies only to --lr-schedule epochs",
        ),
        (
            &["--momentum", "0.5"],
            "--momentum applies only to --optimizer sgd",
        ),
        (
            &["--dropout", "0.3", "--layers", "1"],
            "--dropout 0.3 has no effect on a 1-layer model",
        ),
        (
            &["--val-fraction", "0", "--val-chars", "500"],
            "--val-chars has no effect with --val-fraction 0",
        ),
    ] {
        let o = train(&dir, "refused", extra);
        assert_one_line_error(&o, needle);
        assert!(!dir.path().join("refused/latest.json").exists());
    }
    // What the rule allows: the same flags where they act.
    for extra in [
        &["--lr-schedule", "epochs", "--lr-decay", "0.9"][..],
        &["--optimizer", "sgd", "--momentum", "0.5"],
        &["--dropout", "0.3", "--layers", "2"],
        &["--layers", "1"],
    ] {
        let o = train(
            &dir,
            "ok",
            &[&["--max-steps", "2", "--force"][..], extra].concat(),
        );
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
    }
    // A 1-layer model chosen by the recipe gets no dropout.
    assert_eq!(
        json(&dir.path().join("ok/latest.json"))["model"]["dropout"],
        0.0
    );
}

/// `--output-dropout` drops the output layer's input: it is the dropout a 1-layer model can
/// have; it is kept in the checkpoint, written out in the repeat command, fixed on resume
/// and refused for a classifier, whose `--dropout` already acts there.
#[test]
fn output_dropout_where_it_acts() {
    let dir = TempDir::new().unwrap();
    let o = train(
        &dir,
        "one",
        &[
            "--max-steps",
            "3",
            "--layers",
            "1",
            "--output-dropout",
            "0.3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let model = &json(&dir.path().join("one/latest.json"))["model"];
    assert_eq!(model["output_dropout"].as_f64().unwrap() as f32, 0.3);
    assert_eq!(model["dropout"], 0.0);
    assert!(
        stderr(&o).contains("output dropout 0.3 (given)"),
        "{}",
        stderr(&o)
    );
    // Without it, the file has no such field (files of earlier versions stay as they were).
    let o = train(&dir, "plain", &["--max-steps", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        json(&dir.path().join("plain/latest.json"))["model"]
            .get("output_dropout")
            .is_none()
    );
    let ck = dir.path().join("one/latest.json");
    let o = run(
        &dir,
        &[
            "train",
            "--resume",
            ck.to_str().unwrap(),
            "--output-dropout",
            "0.1",
        ],
    );
    assert_one_line_error(&o, "--output-dropout");
    std::fs::write(
        dir.path().join("labels.txt"),
        "__label__a ab\n__label__b ba\n".repeat(20),
    )
    .unwrap();
    let labels = dir.path().join("labels.txt");
    let o = run(
        &dir,
        &[
            "train",
            labels.to_str().unwrap(),
            "--task",
            "classify",
            "--output-dropout",
            "0.2",
        ],
    );
    assert_one_line_error(&o, "--output-dropout applies to language models");
}

/// `--weight-drop`: in the checkpoint and the printed recipe when given or chosen, absent
/// when 0, fixed on resume, refused for a classifier (that a resumed run continues bit for bit with
/// it is `cli::resume_is_exact`).
#[test]
fn weight_drop_where_it_acts() {
    let dir = TempDir::new().unwrap();
    let flags = ["--max-steps", "4", "--weight-drop", "0.3"];
    let o = train(&dir, "wd", &flags);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = json(&dir.path().join("wd/latest.json"));
    assert_eq!(whole["model"]["weight_drop"].as_f64().unwrap() as f32, 0.3);
    assert!(
        stderr(&o).contains("weight drop 0.3 (given)"),
        "{}",
        stderr(&o)
    );
    // This tiny corpus could be memorised many times over: the recipe chooses weight drop.
    let o = train(&dir, "chosen", &["--max-steps", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("weight drop 0.3 (chosen)"),
        "{}",
        stderr(&o)
    );
    let chosen = json(&dir.path().join("chosen/latest.json"));
    assert_eq!(chosen["model"]["weight_drop"].as_f64().unwrap() as f32, 0.3);
    // Turned off, the file has no such field (files of earlier versions stay as they were).
    let o = train(&dir, "plain", &["--max-steps", "2", "--weight-drop", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plain = json(&dir.path().join("plain/latest.json"));
    assert!(plain["model"].get("weight_drop").is_none());

    let ck = dir.path().join("wd/latest.json");
    let ck = ck.to_str().unwrap();
    let o = run(&dir, &["train", "--resume", ck, "--weight-drop", "0.1"]);
    assert_one_line_error(&o, "--weight-drop");
    std::fs::write(
        dir.path().join("labels.txt"),
        "__label__a ab\n__label__b ba\n".repeat(20),
    )
    .unwrap();
    let labels = dir.path().join("labels.txt");
    let labels = labels.to_str().unwrap();
    let o = run(
        &dir,
        &[
            "train",
            labels,
            "--task",
            "classify",
            "--weight-drop",
            "0.2",
        ],
    );
    assert_one_line_error(&o, "--weight-drop applies to language models");
}

/// A stream-mode model saw `<end>` once per file: `score` says so and scores each line up
/// to its newline; `--end end` and `--end none` are the documented alternatives.
#[test]
fn score_with_a_stream_mode_model() {
    let dir = TempDir::new().unwrap();
    let stream = stream_model(&dir);
    std::fs::write(dir.path().join("l.txt"), "the fox\nthe lazy dog\n").unwrap();
    let nats = |extra: &[&str]| {
        let mut args = vec!["score", "l.txt", "--checkpoint", &stream, "--json"];
        args.extend(extra);
        let o = run(&dir, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let lines: Vec<Value> = stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let n: Vec<f64> = lines.iter().map(|v| v["nats"].as_f64().unwrap()).collect();
        (n, stderr(&o))
    };
    let (newline, note) = nats(&[]);
    assert!(
        note.contains("trained in stream mode") && note.contains("--end end"),
        "{note}"
    );
    let (end, note_end) = nats(&["--end", "end"]);
    let (none, _) = nats(&["--end", "none"]);
    assert!(!note_end.contains("trained in stream mode"));
    assert_eq!(nats(&["--end", "newline"]).0, newline);
    // The characters' part is the same; what ends the line adds its own surprisal.
    for i in 0..2 {
        assert!(
            none[i] < newline[i] && none[i] < end[i] && newline[i] != end[i],
            "{none:?} {newline:?} {end:?}"
        );
    }
}

/// `--beam` prints what every candidate agrees on as soon as it is fixed: a search for 100
/// million characters shows text long before it could end.
#[test]
fn beam_search_prints_as_it_goes() {
    let dir = TempDir::new().unwrap();
    let stream = stream_model(&dir);
    let bin = assert_cmd::cargo::cargo_bin("charrnn");
    let mut child = std::process::Command::new(bin)
        .current_dir(dir.path())
        .args(["sample", "--checkpoint", &stream, "--prime", "the "])
        .args(["--beam", "1", "--length-penalty", "1", "--len", "100000000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < 2000 {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "the search ended or printed nothing");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "still searching while printing"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(got.starts_with(b"the "));

    // Where the candidates disagree, stderr says how far the search is after 3 seconds.
    let bin = assert_cmd::cargo::cargo_bin("charrnn");
    let mut child = std::process::Command::new(bin)
        .current_dir(dir.path())
        .args(["sample", "--checkpoint", &stream, "--prime", "the "])
        .args(["--beam", "8", "--length-penalty", "1", "--len", "100000000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        line.starts_with("charrnn: beam 8: ")
            && line.contains("of at most 100000000 characters searched"),
        "{line}"
    );
}

/// The activation page: numbers in their shortest f32 form, and the size per character
/// the help states (55 + 1.34 x layers x hidden bytes), measured.
#[test]
fn activation_page_numbers_and_size() {
    let dir = TempDir::new().unwrap();
    let stream = stream_model(&dir);
    std::fs::write(dir.path().join("t.txt"), common::TEXT.repeat(60)).unwrap();
    let o = run(
        &dir,
        &["viz", "t.txt", "--checkpoint", &stream, "-o", "p.html"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(dir.path().join("p.html")).unwrap();
    let start = page.find("id=\"data\">").unwrap() + 10;
    let data: Value =
        serde_json::from_str(&page[start..start + page[start..].find("</script>").unwrap()])
            .unwrap();
    let raw = &page[start..];
    let arr = &raw[raw.find("\"surprisal\":[").unwrap()..];
    let arr = &arr[..arr.find(']').unwrap()];
    for number in arr.trim_start_matches("\"surprisal\":[").split(',') {
        assert!(number.len() <= 6, "{number} is not in its shortest form");
    }
    let n = data["text"].as_str().unwrap().chars().count();
    let per_char = page.len() as f64 / n as f64;
    let help = 55.0 + 1.34 * 2.0 * 24.0;
    eprintln!("{per_char:.1} bytes per character, help says {help:.1}");
    assert!(
        (per_char - help).abs() < 0.15 * help,
        "{per_char} vs the help's {help}"
    );
    let help_text = stdout(&charrnn().args(["viz", "--help"]).output().unwrap());
    assert!(help_text.contains("55 + 1.34 x layers x hidden bytes"));
}

/// `bench` without a corpus runs on the play built into the binary, from any directory.
#[test]
fn bench_needs_no_corpus() {
    let dir = TempDir::new().unwrap();
    let o = run(
        &dir,
        &[
            "bench",
            "--hidden",
            "16",
            "--batch-size",
            "8",
            "--seq-len",
            "16",
            "--seconds",
            "0.2",
            "--sample-chars",
            "20",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["corpus"], "built-in data/plays.txt");
    assert!(v["train_chars_per_s"].as_f64().unwrap() > 0.0);
    // Its sizes are checked before anything is allocated.
    for hidden in ["4294967296", "100000"] {
        let o = run(&dir, &["bench", "--hidden", hidden, "--seconds", "0.1"]);
        assert_one_line_error(&o, "; use a smaller --hidden");
    }
}

/// A corpus of tens of thousands of distinct characters with --time-limit: the measurement
/// of this machine fits its memory (fewer streams), and training runs.
#[test]
fn a_huge_vocabulary_with_a_time_limit() {
    let dir = TempDir::new().unwrap();
    let mut text = String::new();
    for (i, c) in ('\u{4e00}'..='\u{9fff}').take(20_000).enumerate() {
        text.push(c);
        if i % 50 == 49 {
            text.push('\n');
        }
    }
    std::fs::write(dir.path().join("han.txt"), text.repeat(2)).unwrap();
    let o = charrnn()
        .current_dir(dir.path())
        .args(["train", "han.txt", "--time-limit", "2", "--batch-size", "4"])
        .args([
            "--seq-len",
            "16",
            "--sample-len",
            "0",
            "--val-fraction",
            "0.01",
        ])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("GFLOP/s of training"), "{}", stderr(&o));
}
