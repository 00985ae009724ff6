//! The activation page in a real browser: `charrnn viz` writes a page that headless Chromium
//! renders with the text in the DOM (one span per character) and in colour.
//!
//! Without Chromium the browser part is skipped with a note, except under CI (`CI=true`),
//! where a missing browser is a failure: `.ci/run` installs Debian's `chromium`.

mod common;
use common::*;

fn browser() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Runs headless Chromium on `page` with `args`; returns stdout.
fn chromium(bin: &str, dir: &Path, page: &Path, args: &[&str]) -> String {
    let o = std::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The text inside `<div id="text" …>…</div>` of a DOM dump, tags removed and entities
/// decoded.
fn rendered_text(dom: &str) -> String {
    let start = dom.find("id=\"text\"").expect("the text container");
    let body = &dom[start..];
    let body = &body[body.find('>').unwrap() + 1..body.find("</div>").unwrap()];
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

#[test]
fn the_activation_page_renders_in_colour_in_a_browser() {
    let dir = TempDir::new().unwrap();
    let text: String = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/score/lines.txt"
    ))
    .unwrap()
    .lines()
    .take(30)
    .map(|l| format!("{l}\n"))
    .collect();
    std::fs::write(dir.path().join("names.txt"), &text).unwrap();
    let ck = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/score/lstm.json"
    );
    let page = dir.path().join("page.html");
    let o = run(
        &dir,
        &[
            "viz",
            "names.txt",
            "--checkpoint",
            ck,
            "--output",
            "page.html",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing is fetched.
    for needle in ["http://", "https://", "<link", " src=", "@import", "url("] {
        assert!(
            !html.contains(needle),
            "the page refers to something outside it: {needle}"
        );
    }
    // Characters the model never saw are named, not skipped.
    std::fs::write(dir.path().join("bad.txt"), "Anna-Maria").unwrap();
    let o = run(&dir, &["viz", "bad.txt", "--checkpoint", ck]);
    assert_one_line_error(&o, "'-'");

    let Some(bin) = browser() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("no Chromium under CI: .ci/run must install Debian's chromium");
        }
        eprintln!(
            "note: skipping the browser part of this test: no chromium on this machine (apt-get install chromium)"
        );
        return;
    };
    let dom = chromium(bin, dir.path(), &page, &["--dump-dom"]);
    let n = text.chars().count();
    assert!(
        dom.contains(&format!("data-rendered=\"{n}\"")),
        "the script did not finish"
    );
    assert_eq!(rendered_text(&dom).replace('\u{21b5}', ""), text);
    assert!(
        dom.contains("position in line") || dom.contains("upper-case line"),
        "unit suggestions"
    );

    let shot = dir.path().join("shot.png");
    chromium(
        bin,
        dir.path(),
        &page,
        &[
            "--window-size=1000,700",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let pixels = buf[..info.buffer_size()].chunks_exact(channels);
    let total = pixels.len();
    let coloured = pixels
        .filter(|p| {
            let (mx, mn) = (p[..3].iter().max().unwrap(), p[..3].iter().min().unwrap());
            mx - mn > 40
        })
        .count();
    eprintln!("{coloured} of {total} pixels in colour");
    assert!(
        coloured * 100 > total,
        "the screenshot is not in colour: {coloured} of {total}"
    );
    if let Ok(keep) = std::env::var("CHARRNN_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

/// Text that looks like markup is shown as text: `<!--` followed by `<script>` would keep
/// the page's data element open (the page stays blank) unless every `<` in the data is
/// escaped, and `</script>` would close it early.
#[test]
fn markup_in_the_text_is_shown_as_text() {
    let dir = TempDir::new().unwrap();
    // (No `-->` after the `<!--`: it would end the comment state and hide the fault.)
    let text = "a <!--<script>alert(1)</script> b </script> c\n<b>bold</b> & \"q\"\n";
    std::fs::write(dir.path().join("m.txt"), text.repeat(20)).unwrap();
    let o = run(
        &dir,
        &[
            "train",
            "m.txt",
            "--hidden",
            "8",
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--seq-len",
            "8",
            "--sample-len",
            "0",
            "--dir",
            "m",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(dir.path().join("show.txt"), text).unwrap();
    let o = run(&dir, &["viz", "show.txt", "--dir", "m", "-o", "page.html"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = dir.path().join("page.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let data = &html[html.find("id=\"data\">").unwrap()..];
    let data = &data[..data.find("</script>").unwrap()];
    assert!(!data[1..].contains('<'), "markup left in the data");

    let Some(bin) = browser() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("no Chromium under CI: .ci/run must install Debian's chromium");
        }
        eprintln!("note: skipping the browser part of this test: no chromium on this machine");
        return;
    };
    let dom = chromium(bin, dir.path(), &page, &["--dump-dom"]);
    let n = text.chars().count();
    assert!(
        dom.contains(&format!("data-rendered=\"{n}\"")),
        "the script did not run to the end"
    );
    assert_eq!(rendered_text(&dom).replace('\u{21b5}', ""), text);
}
