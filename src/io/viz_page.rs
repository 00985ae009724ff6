//! The activation page: one self-contained HTML file (no network, no external scripts or
//! fonts) showing [`Activations`]: the text coloured by surprisal, the model's top-5
//! predictions on hover or tap, and a control that recolours the text by any hidden
//! unit's activation. The template is `viz.html` beside this file; the data goes in as JSON,
//! activations as base64 bytes (`round(127 h)`, which is plenty for a colour).

use crate::analysis::viz::Activations;
use crate::text::vocab::Vocab;
use serde_json::json;
use std::io::{self, Write};

const TEMPLATE: &str = include_str!("viz.html");

/// What the page says about where the data came from.
pub struct PageInfo<'a> {
    pub source: &'a str,
    pub model: &'a str,
    /// Characters of the whole text (the page may show only the first ones).
    pub total_chars: usize,
}

/// Writes the page to `out`, streaming: the activations go out as base64 straight from
/// [`Activations::h`], with no copy of the page in memory. Numbers are written in the
/// shortest form that reads back as the same `f32` (`0.026`, not `0.026000000536441803`);
/// probabilities and surprisals are rounded to three decimals first.
pub fn render(a: &Activations, vocab: &Vocab, info: &PageInfo, out: impl Write) -> io::Result<()> {
    use serde::ser::{SerializeMap, Serializer};
    let n = a.chars.len();
    debug_assert_eq!(a.top_ids.len(), n);
    let names: Vec<String> = (0..vocab.len() as u32)
        .map(|id| vocab.token_name(id))
        .collect();
    let round = |x: f32| (x * 1000.0).round() / 1000.0;
    let mean_bits = a.surprisal.iter().map(|&s| s as f64).sum::<f64>()
        / n.max(1) as f64
        / std::f64::consts::LN_2;
    let (head, tail) = TEMPLATE
        .split_once("__DATA__")
        .expect("the template has a place for the data");
    let mut out = io::BufWriter::new(out);
    out.write_all(head.as_bytes())?;
    let mut w = EscapeLt(&mut out);
    {
        let mut ser = serde_json::Serializer::new(&mut w);
        let mut map = ser.serialize_map(None)?;
        map.serialize_entry("source", info.source)?;
        map.serialize_entry("model", info.model)?;
        map.serialize_entry("total_chars", &info.total_chars)?;
        map.serialize_entry("truncated", &(n < info.total_chars))?;
        map.serialize_entry("layers", &a.h.len())?;
        map.serialize_entry("hidden", &a.hidden)?;
        map.serialize_entry("vocab", &names)?;
        map.serialize_entry("text", &a.chars.iter().collect::<String>())?;
        let surprisal: Vec<f32> = a.surprisal.iter().map(|&s| round(s)).collect();
        map.serialize_entry("surprisal", &surprisal)?;
        map.serialize_entry("top_ids", &a.top_ids.concat())?;
        let top_p: Vec<f32> = a.top_probs.iter().flatten().map(|&p| round(p)).collect();
        map.serialize_entry("top_p", &top_p)?;
        let trackers: Vec<_> = a
            .tracking
            .iter()
            .map(|t| {
                json!({
                    "property": t.property, "layer": t.layer, "unit": t.unit,
                    "correlation": t.correlation,
                })
            })
            .collect();
        map.serialize_entry("trackers", &trackers)?;
        map.serialize_entry("mean_bits", &mean_bits)?;
        // The map is closed by hand below, after "h", which is written without being built.
    }
    w.write_all(b",\"h\":[")?;
    for (l, layer) in a.h.iter().enumerate() {
        if l > 0 {
            w.write_all(b",")?;
        }
        w.write_all(b"\"")?;
        write_base64(layer.iter().map(|&x| x as u8), &mut w)?;
        w.write_all(b"\"")?;
    }
    w.write_all(b"]}")?;
    out.write_all(tail.as_bytes())?;
    out.flush()
}

/// Writes JSON with every `<` as `\u003c`. JSON has `<` only inside strings, where the
/// escape means the same character; in the page's `<script>` element no text can then
/// close the element (`</script>`) or open an HTML comment (`<!--`, after which a
/// `<script>` keeps the element open), whatever the text shown holds.
struct EscapeLt<W: Write>(W);

impl<W: Write> Write for EscapeLt<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for (i, part) in buf.split(|&b| b == b'<').enumerate() {
            if i > 0 {
                self.0.write_all(b"\\u003c")?;
            }
            self.0.write_all(part)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn write_base64(bytes: impl Iterator<Item = u8>, out: &mut impl Write) -> io::Result<()> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = Vec::with_capacity(1 << 16);
    let emit = |c: [u8; 3], len: usize, text: &mut Vec<u8>| {
        let n = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
        for k in 0..4 {
            text.push(if k <= len {
                A[(n >> (18 - 6 * k) & 63) as usize]
            } else {
                b'='
            });
        }
    };
    let (mut chunk, mut len) = ([0u8; 3], 0);
    for b in bytes {
        chunk[len] = b;
        len += 1;
        if len == 3 {
            emit(chunk, 3, &mut text);
            len = 0;
            if text.len() >= (1 << 16) - 4 {
                out.write_all(&text)?;
                text.clear();
            }
        }
    }
    if len > 0 {
        chunk[len..].fill(0);
        emit(chunk, len, &mut text);
    }
    out.write_all(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base64(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_base64(bytes.iter().copied(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0x00, 0x80]), "/wCA");
    }

    /// Every `<` of the data is escaped, and the JSON still reads back the same.
    #[test]
    fn no_markup_survives_in_the_data() {
        let text = "a</script><!--<script>b<";
        let mut out = Vec::new();
        serde_json::to_writer(EscapeLt(&mut out), &json!({ "text": text })).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains('<'), "{s}");
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["text"], text);
    }
}
