//! `--precision bf16` on the real binary: refused where the CPU cannot run it (here forced
//! with `CHARRNN_ISA=avx2`, so this part runs on every machine), and where it can: recorded
//! in the checkpoint, resumable, switchable back to f32, and stated by `eval`.

mod common;
use common::*;

fn bf16_here() -> bool {
    charrnn::kernels::Precision::Bf16.check_available().is_ok()
}

#[test]
fn bf16_is_refused_without_avx512_bf16() {
    let dir = TempDir::new().unwrap();
    let c = corpus(&dir);
    let c = c.to_str().unwrap();
    let train_args: Vec<&str> = ["train", c, "--precision", "bf16", "--time-limit", "5"]
        .into_iter()
        .chain(SMALL.iter().copied())
        .collect();
    let bench = [
        "bench",
        c,
        "--precision",
        "bf16",
        "--seconds",
        "0.1",
        "--hidden",
        "8",
    ];
    for args in [&train_args[..], &bench[..]] {
        let o = charrnn()
            .current_dir(dir.path())
            .env("CHARRNN_ISA", "avx2")
            .args(args)
            .output()
            .unwrap();
        assert_one_line_error(&o, "--precision bf16 needs a CPU with AVX512_BF16");
        assert!(stderr(&o).contains("CHARRNN_ISA"), "{}", stderr(&o));
    }
    // Nothing was written by the refused run.
    assert!(!dir.path().join("checkpoints").join("latest.json").exists());
    let o = train(&dir, "f32", &["--max-steps", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = charrnn()
        .current_dir(dir.path())
        .env("CHARRNN_ISA", "avx2")
        .args([
            "eval",
            "--checkpoint",
            "f32/latest.json",
            "--precision",
            "bf16",
        ])
        .output()
        .unwrap();
    assert_one_line_error(&o, "--precision bf16 needs a CPU with AVX512_BF16");
}

/// f32 checkpoints do not mention precision, so they stay as they were (and old ones load).
#[test]
fn f32_checkpoints_have_no_precision_field() {
    let dir = TempDir::new().unwrap();
    let o = train(&dir, "run", &["--max-steps", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = json(&dir.path().join("run/latest.json"));
    assert!(
        ck["training"].get("precision").is_none(),
        "{}",
        ck["training"]
    );
}

#[test]
fn bf16_runs_resume_and_switch_back_to_f32() {
    if !bf16_here() {
        eprintln!("note: no AVX512_BF16 on this CPU; bf16 runs are not tested here");
        return;
    }
    let dir = TempDir::new().unwrap();
    let o = train(&dir, "run", &["--precision", "bf16", "--max-steps", "10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bf16 ("),
        "header names the products: {}",
        stderr(&o)
    );
    let ck = json(&dir.path().join("run/latest.json"));
    assert_eq!(ck["training"]["precision"], "bf16");

    // Resumed where bf16 cannot run: refused, naming the way on.
    let o = charrnn()
        .current_dir(dir.path())
        .env("CHARRNN_ISA", "avx2")
        .args(["train", "--resume", "run/latest.json", "--max-steps", "15"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "pass --precision f32 to continue this bf16 run in f32");
    assert_eq!(
        json(&dir.path().join("run/latest.json"))["progress"]["step"],
        10
    );

    // Resumed in bf16, and then on in f32.
    let resume = |steps: &str, extra: &[&str]| {
        charrnn()
            .current_dir(dir.path())
            .args(["train", "--resume", "run/latest.json", "--max-steps", steps])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = resume("15", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = json(&dir.path().join("run/latest.json"));
    assert_eq!(
        (
            ck["progress"]["step"].as_u64(),
            &ck["training"]["precision"]
        ),
        (Some(15), &Value::from("bf16"))
    );
    let o = resume("20", &["--precision", "f32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = json(&dir.path().join("run/latest.json"));
    assert_eq!(ck["progress"]["step"], 20);
    assert!(ck["training"].get("precision").is_none());

    // eval in bf16 says so, and its number is close to the f32 one.
    let eval = |p: &str| {
        let o = charrnn()
            .current_dir(dir.path())
            .args([
                "eval",
                "--checkpoint",
                "run/latest.json",
                "--json",
                "--precision",
                p,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()
    };
    let (a, b) = (eval("f32"), eval("bf16"));
    assert_eq!(b["precision"], "bf16");
    let (la, lb) = (
        a["loss_nats_per_char"].as_f64().unwrap(),
        b["loss_nats_per_char"].as_f64().unwrap(),
    );
    assert!(
        (la - lb).abs() < 0.01 * la && la != lb,
        "f32 {la}, bf16 {lb}"
    );
    let o = run(
        &dir,
        &[
            "eval",
            "--checkpoint",
            "run/latest.json",
            "--precision",
            "bf16",
        ],
    );
    assert!(stdout(&o).contains("a bf16 number"), "{}", stdout(&o));
}
