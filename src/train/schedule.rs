//! The learning-rate schedule.

/// char-rnn's schedule: the learning rate is multiplied by `decay` at the end of every epoch
/// from epoch `after` on (`decay = 1` keeps it constant).
///
/// Serialised inside a checkpoint's `training` section as `lr`, `lr_decay`, `lr_decay_after`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    #[serde(rename = "lr")]
    pub base: f32,
    #[serde(rename = "lr_decay")]
    pub decay: f32,
    #[serde(rename = "lr_decay_after")]
    pub after: usize,
}

impl Default for LrSchedule {
    /// 2e-3, decayed by 0.97 per epoch after 10 epochs (char-rnn's shape of schedule).
    fn default() -> Self {
        LrSchedule {
            base: 2e-3,
            decay: 0.97,
            after: 10,
        }
    }
}

impl LrSchedule {
    /// Learning rate during (0-based) epoch `epoch`.
    pub fn lr(&self, epoch: usize) -> f32 {
        let n = epoch.saturating_sub(self.after);
        self.base * self.decay.powi(n as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_decays_after_given_epoch() {
        let s = LrSchedule {
            base: 1.0,
            decay: 0.5,
            after: 2,
        };
        assert_eq!([s.lr(0), s.lr(2), s.lr(3), s.lr(5)], [1.0, 1.0, 0.5, 0.125]);
    }
}
