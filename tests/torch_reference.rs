//! charrnn's forward pass, gradients and Adam against PyTorch's numbers.
//!
//! `tests/fixtures/torch_reference.json` was produced by `tests/fixtures/make_torch_reference.py`
//! (PyTorch 2.15, float64 arithmetic on weights drawn in float32): for each cell type with
//! one and two layers, the logits, loss, final state and every parameter gradient of
//! `nn.RNN/LSTM/GRU + nn.Linear + cross_entropy` on a fixed window with a non-zero initial
//! state, and a 10-step `clip_grad_norm_` + Adam trajectory. charrnn computes in f32, so
//! agreement is to f32 rounding: every tensor within 2e-5 of the reference, relative to the
//! tensor's largest entry (the worst case measured is printed).

use charrnn::nn::cell::CellKind;
use charrnn::nn::{Model, ModelConfig, PackedWeights, State, Workspace};
use charrnn::text::Window;
use charrnn::train::optim::{OptimConfig, Optimizer, OptimizerKind, clip_grad_norm};
use serde_json::Value;

const TOL: f64 = 2e-5;

fn floats(v: &Value) -> Vec<f64> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// Largest |a - b| relative to the largest |b|.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-12);
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max)
        / scale
}

struct Case {
    name: String,
    model: Model,
    window: Window,
    state: State,
    json: Value,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/torch_reference.json"
    ))
    .unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let config = ModelConfig {
                cell: serde_json::from_value(c["cell"].clone()).unwrap(),
                vocab_size: usize_of(&c["vocab"]),
                hidden: usize_of(&c["hidden"]),
                layers: usize_of(&c["layers"]),
                dropout: 0.0,
                output_dropout: 0.0,
                weight_drop: 0.0,
            };
            let mut model = Model::new(config);
            for spec in model.layout.tensors.clone() {
                let p = &c["params"][&spec.name];
                let shape: Vec<usize> = p["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(usize_of)
                    .collect();
                assert_eq!(shape, spec.shape, "{}", spec.name);
                for (dst, x) in model.params[spec.range()].iter_mut().zip(floats(p)) {
                    *dst = x as f32;
                }
            }
            // The fixture is batch-first [B][T]; a charrnn window is time-major [T, B].
            let (b, t) = (usize_of(&c["batch"]), usize_of(&c["seq_len"]));
            let ids = |key: &str| -> Vec<u32> {
                let rows = c[key].as_array().unwrap();
                (0..t * b)
                    .map(|i| rows[i % b][i / b].as_u64().unwrap() as u32)
                    .collect()
            };
            let window = Window {
                t_len: t,
                batch: b,
                x: ids("inputs"),
                y: ids("targets"),
                valid: vec![true; t * b],
                reset: vec![false; t * b],
                count: t * b,
            };
            let mut state = State::zeros(&config, b);
            state.h = floats(&c["h0"]).iter().map(|&x| x as f32).collect();
            if config.cell == CellKind::Lstm {
                state.c = floats(&c["c0"]).iter().map(|&x| x as f32).collect();
            }
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                model,
                window,
                state,
                json: c.clone(),
            }
        })
        .collect()
}

fn loss_and_grads(case: &Case, model: &Model) -> (f64, Vec<f32>) {
    let w = &case.window;
    let mut ws = Workspace::new(&model.config, w.batch, w.t_len);
    let packed = PackedWeights::training(model);
    let mut state = case.state.clone();
    let loss = model.forward(&packed, &mut ws, w, 0..w.batch, &mut state, None) / w.count as f64;
    let mut grads = vec![0.0; model.param_count()];
    model.backward(&packed, &mut ws, &mut grads, 1.0 / w.count as f32);
    (loss, grads)
}

#[test]
fn six_cases_are_present() {
    let names: Vec<String> = cases().into_iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["rnn_l1", "rnn_l2", "lstm_l1", "lstm_l2", "gru_l1", "gru_l2"]
    );
}

#[test]
fn logits_and_final_state_match_pytorch() {
    for case in cases() {
        let w = &case.window;
        let mut ws = Workspace::new(&case.model.config, w.batch, w.t_len);
        let packed = PackedWeights::inference(&case.model);
        let mut state = case.state.clone();
        let logits = case
            .model
            .logits(&packed, &mut ws, w, 0..w.batch, &mut state)
            .to_vec();
        let v = case.model.config.vocab_size;
        // reference logits are [B, T, V]; ours [T, B, V]
        let reference = floats(&case.json["logits"]);
        let reordered: Vec<f64> = (0..w.t_len * w.batch)
            .flat_map(|i| {
                let (t, b) = (i / w.batch, i % w.batch);
                reference[(b * w.t_len + t) * v..(b * w.t_len + t + 1) * v].to_vec()
            })
            .collect();
        let e = rel_err(&logits, &reordered);
        eprintln!("{}: logits {e:.2e}", case.name);
        assert!(e < TOL, "{}: logits off by {e}", case.name);
        assert!(
            rel_err(&state.h, &floats(&case.json["h_final"])) < TOL,
            "{}: h",
            case.name
        );
        if case.model.config.cell == CellKind::Lstm {
            assert!(
                rel_err(&state.c, &floats(&case.json["c_final"])) < TOL,
                "{}: c",
                case.name
            );
        }
    }
}

#[test]
fn loss_and_every_gradient_match_pytorch() {
    for case in cases() {
        let (loss, grads) = loss_and_grads(&case, &case.model);
        let want = case.json["loss"].as_f64().unwrap();
        assert!(
            (loss - want).abs() < TOL * want,
            "{}: loss {loss} vs {want}",
            case.name
        );
        for spec in &case.model.layout.tensors {
            let e = rel_err(
                &grads[spec.range()],
                &floats(&case.json["grads"][&spec.name]),
            );
            eprintln!("{} {}: grad {e:.2e}", case.name, spec.name);
            assert!(e < TOL, "{} {}: gradient off by {e}", case.name, spec.name);
        }
    }
}

#[test]
fn adam_trajectory_matches_pytorch() {
    for case in cases() {
        let adam = &case.json["adam"];
        let lr = adam["lr"].as_f64().unwrap() as f32;
        let clip = adam["clip"].as_f64().unwrap() as f32;
        let mut config = OptimConfig::new(OptimizerKind::Adam);
        config.beta1 = adam["betas"][0].as_f64().unwrap() as f32;
        config.beta2 = adam["betas"][1].as_f64().unwrap() as f32;
        config.eps = adam["eps"].as_f64().unwrap() as f32;
        let mut model = case.model.clone();
        let mut opt = Optimizer::new(config, model.param_count());
        let want_losses: Vec<f64> = adam["losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let want_norms: Vec<f64> = adam["grad_norms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        for step in 0..usize_of(&adam["steps"]) {
            let (loss, mut grads) = loss_and_grads(&case, &model);
            assert!(
                (loss - want_losses[step]).abs() < TOL * want_losses[step],
                "{} step {step}: loss {loss} vs {}",
                case.name,
                want_losses[step]
            );
            let norm = clip_grad_norm(&mut grads, clip);
            assert!(
                (norm - want_norms[step]).abs() < TOL * want_norms[step],
                "{} step {step}: grad norm",
                case.name
            );
            let mut params = std::mem::take(&mut model.params);
            assert!(opt.update(&mut params, &grads, lr));
            model.params = params;
        }
        // Adam divides by √v, so on elements whose gradient is near zero f32 rounding of the
        // gradient changes the step's direction: compare final parameters in units of the
        // largest possible movement (lr per step). Without clipping they would be 3e-3 to
        // 1.3e-2 away (measured with the script), i.e. over 3% of lr·steps.
        let budget = lr as f64 * usize_of(&adam["steps"]) as f64;
        for spec in &model.layout.tensors {
            let want = floats(&adam["final_params"][&spec.name]);
            let e = model.params[spec.range()]
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(
                e < 0.01 * budget,
                "{} {}: final params off by {e}",
                case.name,
                spec.name
            );
        }
    }
}
