//! The activation page: one self-contained HTML file (no network, no external scripts or
//! fonts) showing [`Activations`]: the text coloured by surprisal, the model's top-5
//! predictions on hover or tap, and a control that recolours the text by any hidden
//! unit's activation. The template is `viz.html` beside this file; the data goes in as JSON,
//! activations as base64 bytes (`round(127 h)`, which is plenty for a colour).

use crate::analysis::viz::{Activations, TOP};
use crate::text::vocab::Vocab;
use serde_json::json;

const TEMPLATE: &str = include_str!("viz.html");

/// What the page says about where the data came from.
pub struct PageInfo<'a> {
    pub source: &'a str,
    pub model: &'a str,
    /// Characters of the whole text (the page may show only the first ones).
    pub total_chars: usize,
}

/// The HTML of the page.
pub fn render(a: &Activations, vocab: &Vocab, info: &PageInfo) -> String {
    let n = a.chars.len();
    let names: Vec<String> = (0..vocab.len() as u32)
        .map(|id| vocab.token_name(id))
        .collect();
    let round = |x: f32| (x * 1000.0).round() / 1000.0;
    let mean_bits = a.surprisal.iter().map(|&s| s as f64).sum::<f64>()
        / n.max(1) as f64
        / std::f64::consts::LN_2;
    let data = json!({
        "source": info.source,
        "model": info.model,
        "total_chars": info.total_chars,
        "truncated": n < info.total_chars,
        "layers": a.h.len(),
        "hidden": a.hidden,
        "vocab": names,
        "text": a.chars.iter().collect::<String>(),
        "surprisal": a.surprisal.iter().map(|&s| round(s)).collect::<Vec<_>>(),
        "top_ids": a.top_ids.iter().flatten().collect::<Vec<_>>(),
        "top_p": a.top_probs.iter().flatten().map(|&p| round(p)).collect::<Vec<_>>(),
        "h": a.h.iter().map(|layer| base64(&quantise(layer))).collect::<Vec<_>>(),
        "trackers": a.tracking.iter().map(|t| json!({
            "property": t.property, "layer": t.layer, "unit": t.unit,
            "correlation": t.correlation,
        })).collect::<Vec<_>>(),
        "mean_bits": mean_bits,
    });
    debug_assert_eq!(a.top_ids.len() * TOP, n * TOP);
    // `</` must not appear inside the script element that holds the data.
    let data = data.to_string().replace("</", "<\\/");
    TEMPLATE.replacen("__DATA__", &data, 1)
}

fn quantise(xs: &[f32]) -> Vec<u8> {
    xs.iter()
        .map(|&x| (x.clamp(-1.0, 1.0) * 127.0).round() as i8 as u8)
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (c.get(1).copied().unwrap_or(0) as u32) << 8
            | c.get(2).copied().unwrap_or(0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0x00, 0x80]), "/wCA");
        assert_eq!(quantise(&[1.0, -1.0, 0.5, 3.0]), [127, 129, 64, 127]);
    }
}
