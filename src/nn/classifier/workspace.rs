//! The buffers of one shard's classifier passes, allocated once for a batch of B sequences of
//! up to `t_cap` characters, and the padded, time-major layout a batch is loaded into.

use super::ClassifierConfig;
use crate::nn::cell::LayerCache;

/// Every buffer the forward and backward passes of one shard need.
///
/// A batch of sequences of lengths `len_b` is stored time-major, `[T, B]` with
/// `T = max_b len_b`, each row left-aligned (position `t·B + b` is character `t` of sequence
/// `b`). The reverse direction reads the same rows with each sequence's valid part reversed:
/// position `t·B + b` ↔ `(len_b-1-t)·B + b` ([`ClassifierWorkspace::perm`], its own inverse;
/// padding maps to itself). So both directions are ordinary forward runs of a cell over
/// left-aligned rows, and padding only ever follows a sequence's valid positions: it cannot
/// reach them. With batches of similar lengths (the trainer buckets by length), little
/// padding is computed.
#[derive(Debug, Clone)]
pub struct ClassifierWorkspace {
    /// B: rows of every batch loaded.
    pub batch: usize,
    pub t_cap: usize,
    pub(crate) t_len: usize,
    /// [T, B]: ids in time order, and with each row's valid part reversed (padding: 0).
    pub(crate) x: Vec<u32>,
    pub(crate) x_rev: Vec<u32>,
    /// [N]: the reversal of each row's valid part, as above.
    pub(crate) perm: Vec<u32>,
    /// [B]: each sequence's length.
    pub(crate) lens: Vec<usize>,
    /// [B]: labels and loss weights of the last `forward_loss`.
    pub(crate) labels: Vec<u32>,
    pub(crate) weights: Vec<f32>,
    /// [N]: no resets: every row starts from a zero state at t = 0.
    pub(crate) reset: Vec<bool>,
    /// Per layer and direction (`l·S + d`).
    pub(crate) caches: Vec<LayerCache>,
    /// [B, H]: the zero state each direction starts from (overwritten by the cell).
    pub(crate) h0: Vec<f32>,
    pub(crate) c0: Vec<f32>,
    /// Per layer, [T, B, D]: its output `[h_fwd ‖ h_rev]` at each position, in time order.
    pub(crate) outs: Vec<Vec<f32>>,
    /// Per layer l ≥ 1, [T, B, D]: the dropout mask and the dropped input (with dropout).
    pub(crate) masks: Vec<Vec<f32>>,
    pub(crate) inputs: Vec<Vec<f32>>,
    /// Per layer l ≥ 1, [T, B, D]: its input in the reverse direction's order (bidirectional).
    pub(crate) inputs_rev: Vec<Vec<f32>>,
    /// [B, D]: pooled vector; for max pooling the position each unit's maximum came from.
    pub(crate) pooled: Vec<f32>,
    pub(crate) argmax: Vec<u32>,
    /// [B, D]: dropout mask on the pooled vector, and the head's input.
    pub(crate) head_mask: Vec<f32>,
    pub(crate) head_in: Vec<f32>,
    /// [B, C]: logits, then probabilities, then their gradient.
    pub logits: Vec<f32>,
    pub(crate) dropout_active: bool,
    pub(crate) training: bool,
    /// Backward: [V, G·H] scatter-add of the gather's gradient, [G·H] a bias gradient.
    pub(crate) dw_ih0_t: Vec<f32>,
    pub(crate) db: Vec<f32>,
    /// Backward: [T, B, D] gradient w.r.t. a layer's output; [T, B, H] w.r.t. one
    /// direction's; [T, B, D] w.r.t. a layer's input, and its reverse-order part.
    pub(crate) dout: Vec<f32>,
    pub(crate) dh: Vec<f32>,
    pub(crate) dx: Vec<f32>,
    pub(crate) dx_rev: Vec<f32>,
    /// Backward: [B, D] gradient w.r.t. the pooled vector.
    pub(crate) dpooled: Vec<f32>,
}

impl ClassifierWorkspace {
    /// For training (forward and backward).
    pub fn new(config: &ClassifierConfig, batch: usize, t_cap: usize) -> ClassifierWorkspace {
        ClassifierWorkspace::with_mode(config, batch, t_cap, true)
    }

    /// For the forward pass only.
    pub fn inference(config: &ClassifierConfig, batch: usize, t_cap: usize) -> ClassifierWorkspace {
        ClassifierWorkspace::with_mode(config, batch, t_cap, false)
    }

    /// An upper bound on the bytes [`ClassifierWorkspace::new`] (`training`) or `inference`
    /// allocates, with checked arithmetic (`None` on overflow), to compare with the memory
    /// available before allocating.
    pub fn bytes(
        config: &ClassifierConfig,
        batch: usize,
        t_cap: usize,
        training: bool,
    ) -> Option<u64> {
        let (v, h, l) = (
            config.vocab_size as u64,
            config.hidden as u64,
            config.layers as u64,
        );
        let s = config.directions() as u64;
        let d = s.checked_mul(h)?;
        let gh = (config.cell.gates() as u64).checked_mul(h)?;
        let (b, n) = (batch as u64, (batch as u64).checked_mul(t_cap as u64)?);
        let k = u64::from(training);
        // Per layer and direction, as the language model's (gates, dgh, h_prev, h, c, hn and
        // a few [B, G·H] rows); per layer its output, dropout mask and input, reversed input.
        let per_dir = n
            .checked_mul(gh.checked_mul(2)?.checked_add(h.checked_mul(4)?)?)?
            .checked_add(b.checked_mul(gh)?.checked_mul(8)?)?;
        let per_layer = per_dir
            .checked_mul(s)?
            .checked_add(n.checked_mul(d)?.checked_mul(4)?)?;
        let floats = per_layer
            .checked_mul(l)?
            .checked_add(b.checked_mul(d)?.checked_mul(6)?)?
            .checked_add(b.checked_mul(config.labels as u64)?)?
            .checked_add(k.checked_mul(v.checked_mul(gh)?)?)?
            .checked_add(k.checked_mul(n.checked_mul(d.checked_mul(3)?.checked_add(h)?)?)?)?;
        floats.checked_mul(4)?.checked_add(n.checked_mul(13)?)
    }

    fn with_mode(
        config: &ClassifierConfig,
        batch: usize,
        t_cap: usize,
        training: bool,
    ) -> ClassifierWorkspace {
        let (v, h, c) = (config.vocab_size, config.hidden, config.labels);
        let (s, d) = (config.directions(), config.width());
        let gh = config.cell.gates() * h;
        let n = batch * t_cap;
        let z = |len: usize| vec![0.0f32; len];
        let upper = |l: usize, on: bool| if l > 0 && on { z(n * d) } else { Vec::new() };
        let dropout = config.dropout > 0.0 && training;
        let t = usize::from(training);
        ClassifierWorkspace {
            batch,
            t_cap,
            t_len: 0,
            x: Vec::with_capacity(n),
            x_rev: Vec::with_capacity(n),
            perm: Vec::with_capacity(n),
            lens: Vec::with_capacity(batch),
            labels: Vec::with_capacity(batch),
            weights: Vec::with_capacity(batch),
            reset: vec![false; n],
            caches: (0..config.layers * s)
                .map(|_| LayerCache::new(config.cell, batch, t_cap, h, training))
                .collect(),
            h0: z(batch * h),
            c0: z(if config.cell.has_cell_state() {
                batch * h
            } else {
                0
            }),
            outs: (0..config.layers).map(|_| z(n * d)).collect(),
            masks: (0..config.layers).map(|l| upper(l, dropout)).collect(),
            inputs: (0..config.layers).map(|l| upper(l, dropout)).collect(),
            inputs_rev: (0..config.layers).map(|l| upper(l, s == 2)).collect(),
            pooled: z(batch * d),
            argmax: vec![
                0;
                if config.pool == super::Pool::Max {
                    batch * d
                } else {
                    0
                }
            ],
            head_mask: z(if dropout { batch * d } else { 0 }),
            head_in: z(if dropout { batch * d } else { 0 }),
            logits: z(batch * c),
            dropout_active: false,
            training,
            dw_ih0_t: z(t * v * gh),
            db: z(t * gh),
            dout: z(t * n * d),
            dh: z(t * n * h),
            dx: z(t * n * d),
            dx_rev: z(t * n * d),
            dpooled: z(t * batch * d),
        }
    }

    /// Loads a batch: one sequence per row, each 1 to `t_cap` ids long.
    pub(crate) fn load(&mut self, seqs: &[&[u32]]) {
        assert_eq!(seqs.len(), self.batch, "sequences vs workspace batch");
        let bs = self.batch;
        self.lens.clear();
        self.lens.extend(seqs.iter().map(|s| s.len()));
        let t_len = self.lens.iter().copied().max().unwrap_or(0);
        assert!(
            self.lens.iter().all(|&l| l > 0) && t_len <= self.t_cap,
            "sequence lengths must be in 1..={}",
            self.t_cap
        );
        self.t_len = t_len;
        let n = t_len * bs;
        self.x.clear();
        self.x.resize(n, 0);
        self.x_rev.clear();
        self.x_rev.resize(n, 0);
        self.perm.clear();
        self.perm.extend(0..n as u32);
        for (b, s) in seqs.iter().enumerate() {
            let len = s.len();
            for (t, &id) in s.iter().enumerate() {
                self.x[t * bs + b] = id;
                self.x_rev[(len - 1 - t) * bs + b] = id;
                self.perm[t * bs + b] = ((len - 1 - t) * bs + b) as u32;
            }
        }
    }
}
