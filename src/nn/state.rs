//! The hidden state a model carries from one step or window to the next.

use crate::nn::model::ModelConfig;
use std::ops::Range;

/// The hidden state of every layer for B streams, carried from one window to the next.
///
/// Serialised as the `hidden` section of a checkpoint (`batch`, `h`, `c`); `hidden` is the
/// model's and is not stored.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub batch: usize,
    #[serde(skip)]
    pub hidden: usize,
    /// [L, B, H]
    pub h: Vec<f32>,
    /// [L, B, H] for LSTM, empty otherwise.
    pub c: Vec<f32>,
}

impl State {
    pub fn zeros(config: &ModelConfig, batch: usize) -> State {
        let len = config.layers * batch * config.hidden;
        State {
            batch,
            hidden: config.hidden,
            h: vec![0.0; len],
            c: vec![0.0; if config.cell.has_cell_state() { len } else { 0 }],
        }
    }

    pub fn reset(&mut self) {
        self.h.fill(0.0);
        self.c.fill(0.0);
    }

    pub(crate) fn layer(&self, l: usize) -> Range<usize> {
        let n = self.batch * self.hidden;
        l * n..(l + 1) * n
    }

    /// Layer `l`'s `h` and `c` (empty unless the cell is an LSTM).
    pub(crate) fn hc_mut(&mut self, l: usize) -> (&mut [f32], &mut [f32]) {
        let r = self.layer(l);
        let c = if self.c.is_empty() {
            &mut self.c[..]
        } else {
            &mut self.c[r.clone()]
        };
        (&mut self.h[r], c)
    }

    /// The streams `rows` of this state as a state of their own.
    pub fn rows(&self, rows: Range<usize>) -> State {
        let take = |v: &Vec<f32>| -> Vec<f32> {
            if v.is_empty() {
                return Vec::new();
            }
            v.chunks_exact(self.batch * self.hidden)
                .flat_map(|layer| &layer[rows.start * self.hidden..rows.end * self.hidden])
                .copied()
                .collect()
        };
        State {
            batch: rows.len(),
            hidden: self.hidden,
            h: take(&self.h),
            c: take(&self.c),
        }
    }

    /// Joins states of consecutive stream ranges back into one (inverse of [`State::rows`]).
    pub fn concat(parts: &[State]) -> State {
        let hidden = parts[0].hidden;
        let batch = parts.iter().map(|p| p.batch).sum();
        let layers = parts[0].h.len() / (parts[0].batch * hidden).max(1);
        let join = |get: fn(&State) -> &Vec<f32>| -> Vec<f32> {
            if get(&parts[0]).is_empty() {
                return Vec::new();
            }
            (0..layers)
                .flat_map(|l| parts.iter().flat_map(move |p| &get(p)[p.layer(l)]))
                .copied()
                .collect()
        };
        State {
            batch,
            hidden,
            h: join(|s| &s.h),
            c: join(|s| &s.c),
        }
    }
}
