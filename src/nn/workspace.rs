//! The buffers of one shard's forward and backward passes, allocated once and reused.

use crate::nn::cell::LayerCache;
use crate::nn::model::ModelConfig;
use crate::text::batches::Window;
use crate::text::vocab::START;
use std::ops::Range;

/// Every buffer the forward and backward passes of one shard need, sized once for a batch
/// of `batch` streams and windows of up to `t_cap` steps.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub batch: usize,
    pub t_cap: usize,
    pub(crate) t_len: usize,
    /// [T, B] inputs, targets, scored flags, reset flags of the loaded window.
    pub(crate) x: Vec<u32>,
    pub(crate) y: Vec<u32>,
    pub(crate) valid: Vec<bool>,
    pub(crate) reset: Vec<bool>,
    /// [V, G·H]: the scatter-add buffer of the gather's gradient.
    pub(crate) dw_ih0_t: Vec<f32>,
    pub(crate) layers: Vec<LayerCache>,
    /// Per layer l in 1..=L, [T, B, H]: dropout mask (0 or 1/(1-p)) and the masked input of
    /// layer l, where layer L is the output layer; empty where that input is not dropped.
    pub(crate) masks: Vec<Vec<f32>>,
    pub(crate) inputs: Vec<Vec<f32>>,
    /// Whether the last forward pass dropped units (a training pass with a generator).
    pub(crate) dropout_active: bool,
    /// Whether the backward buffers exist (see [`Workspace::inference`]).
    pub(crate) training: bool,
    /// [T, B, V]: logits, then probabilities, then their gradient.
    pub logits: Vec<f32>,
    /// [T, B, H]: gradient w.r.t. the current layer's output, and w.r.t. its input.
    pub(crate) dh: Vec<f32>,
    pub(crate) dx: Vec<f32>,
    /// [G·H]: a bias gradient, summed once for the two biases that share it.
    pub(crate) db: Vec<f32>,
    /// [G·H, H], with weight drop: the gradient w.r.t. the dropped W_hh, before its mask.
    pub(crate) dw_hh: Vec<f32>,
}

impl Workspace {
    /// A workspace for training (forward and backward).
    pub fn new(config: &ModelConfig, batch: usize, t_cap: usize) -> Workspace {
        Workspace::with_mode(config, batch, t_cap, true)
    }

    /// A workspace for the forward pass only (evaluation, sampling): no gradient buffers.
    pub fn inference(config: &ModelConfig, batch: usize, t_cap: usize) -> Workspace {
        Workspace::with_mode(config, batch, t_cap, false)
    }

    /// An upper bound on the bytes [`Workspace::new`] (`training`) or
    /// [`Workspace::inference`] allocates, with checked arithmetic: `None` if it overflows.
    /// Callers compare it with the memory available before allocating anything.
    pub fn bytes(config: &ModelConfig, batch: usize, t_cap: usize, training: bool) -> Option<u64> {
        let (v, h, l) = (
            config.vocab_size as u64,
            config.hidden as u64,
            config.layers as u64,
        );
        let gh = (config.cell.gates() as u64).checked_mul(h)?;
        let n = (batch as u64).checked_mul(t_cap as u64)?;
        let k = u64::from(training);
        // Per layer: gates (and GRU's dgh) [N, G·H], h_prev, h, c or hn [N, H], the dropout
        // mask and input [N, H] (counted for every layer, which covers the output layer's
        // and layer 0's none), and a few [B, G·H] rows.
        let per_layer = n
            .checked_mul(gh.checked_mul(2)?.checked_add(h.checked_mul(6)?)?)?
            .checked_add((batch as u64).checked_mul(gh)?.checked_mul(8)?)?;
        let floats = per_layer
            .checked_mul(l)?
            .checked_add(n.checked_mul(v)?)? // logits
            .checked_add(k.checked_mul(v.checked_mul(gh)?)?)? // dw_ih0_t
            .checked_add(k.checked_mul(n.checked_mul(h)?.checked_mul(2)?)?)? // dh, dx
            .checked_add(k.checked_mul(gh.checked_mul(h)?)?)?; // dw_hh (weight drop)
        // Inputs and targets (u32) and two flags per position.
        floats.checked_mul(4)?.checked_add(n.checked_mul(10)?)
    }

    fn with_mode(config: &ModelConfig, batch: usize, t_cap: usize, training: bool) -> Workspace {
        let (v, h) = (config.vocab_size, config.hidden);
        let gh = config.cell.gates() * h;
        let n = batch * t_cap;
        let with_dropout = |l: usize| {
            let p = match l == config.layers {
                true => config.output_dropout,
                false => config.dropout,
            };
            if l > 0 && p > 0.0 && training {
                vec![0.0; n * h]
            } else {
                Vec::new()
            }
        };
        Workspace {
            batch,
            t_cap,
            t_len: 0,
            x: Vec::with_capacity(n),
            y: Vec::with_capacity(n),
            valid: Vec::with_capacity(n),
            reset: Vec::with_capacity(n),
            dw_ih0_t: vec![0.0; if training { v * gh } else { 0 }],
            layers: (0..config.layers)
                .map(|_| LayerCache::new(config.cell, batch, t_cap, h, training))
                .collect(),
            masks: (0..=config.layers).map(with_dropout).collect(),
            inputs: (0..=config.layers).map(with_dropout).collect(),
            dropout_active: false,
            training,
            logits: vec![0.0; n * v],
            dh: vec![0.0; if training { n * h } else { 0 }],
            dx: vec![0.0; if training { n * h } else { 0 }],
            db: vec![0.0; if training { gh } else { 0 }],
            dw_hh: match training && config.weight_drop > 0.0 {
                true => vec![0.0; gh * h],
                false => Vec::new(),
            },
        }
    }

    /// Whether the last forward pass dropped units of layer `l`'s input (`l` = L: the
    /// output layer's).
    pub(crate) fn masked(&self, l: usize) -> bool {
        self.dropout_active && !self.masks[l].is_empty()
    }

    /// Takes rows `rows` of a window, as this shard's streams.
    pub(crate) fn load_window(&mut self, win: &Window, rows: Range<usize>) {
        assert_eq!(rows.len(), self.batch, "shard rows vs workspace batch");
        assert!(win.t_len <= self.t_cap, "window longer than the workspace");
        self.t_len = win.t_len;
        for v in [&mut self.x, &mut self.y] {
            v.clear();
        }
        self.valid.clear();
        self.reset.clear();
        for t in 0..win.t_len {
            let r = t * win.batch + rows.start..t * win.batch + rows.end;
            self.x.extend(&win.x[r.clone()]);
            self.y.extend(&win.y[r.clone()]);
            self.valid.extend(&win.valid[r.clone()]);
            self.reset.extend(&win.reset[r]);
        }
    }

    pub(crate) fn load_tokens(&mut self, tokens: &[u32]) {
        assert_eq!(tokens.len(), self.batch, "tokens vs workspace batch");
        self.t_len = 1;
        self.x.clear();
        self.x.extend(tokens);
        self.y.clear();
        self.y.resize(tokens.len(), 0);
        self.valid.clear();
        self.valid.resize(tokens.len(), false);
        self.reset.clear();
        self.reset.extend(tokens.iter().map(|&t| t == START));
    }
}
