//! The checkpoint format is stable: a version-1 file written by charrnn 0.1 (before the
//! checkpoint code was rebuilt on serde derives of the domain types) loads, and saving what
//! was loaded gives back the same bytes.
//!
//! `tests/fixtures/checkpoint_v1.json` was written by
//! `charrnn train corpus.txt --hidden 8 --layers 2 --seq-len 10 --batch-size 4 --max-steps 6
//! --eval-every 3 --dropout 0.1 --threads 2` on a 600-character corpus with non-ASCII text.

use charrnn::io::checkpoint::Checkpoint;

#[test]
fn version_1_file_loads_and_saves_byte_for_byte() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/checkpoint_v1.json"
    );
    let ck = Checkpoint::load(std::path::Path::new(path)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("again.json");
    ck.save(&out).unwrap();
    let (a, b) = (std::fs::read(path).unwrap(), std::fs::read(&out).unwrap());
    if let Some(i) = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then_some(a.len().min(b.len())))
    {
        let around = |v: &[u8]| {
            String::from_utf8_lossy(&v[i.saturating_sub(60)..(i + 60).min(v.len())]).into_owned()
        };
        panic!(
            "re-saved checkpoint differs at byte {i}:\n  was {}\n  now {}",
            around(&a),
            around(&b)
        );
    }
    let restored = ck.restore().unwrap();
    assert_eq!(restored.progress.step, 6);
    assert_eq!(restored.vocab.len(), 22);
    assert_eq!(restored.model.param_count(), 1798);
}
