use std::collections::HashSet;
use std::time::Instant;

fn norm(s: &str) -> String {
    let mut out = String::new();
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            for l in c.to_lowercase() {
                out.push(l);
            }
        }
    }
    out
}

fn numbers(text: &str) -> HashSet<i64> {
    let mut set = HashSet::new();
    let mut cur = String::new();
    let flush = |cur: &mut String, set: &mut HashSet<i64>| {
        let t = cur.trim_end_matches(['.', ',']).replace(',', "");
        if let Ok(v) = t.parse::<f64>() {
            set.insert((v * 1000.0).round() as i64);
        }
        cur.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || ((c == '.' || c == ',') && !cur.is_empty()) {
            cur.push(c);
        } else {
            flush(&mut cur, &mut set);
        }
    }
    flush(&mut cur, &mut set);
    set
}

fn leaves(v: &serde_json::Value, strings: &mut Vec<String>, nums: &mut Vec<f64>) {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => strings.push(s.clone()),
        serde_json::Value::Number(n) => nums.push(n.as_f64().unwrap()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| leaves(x, strings, nums)),
        serde_json::Value::Object(o) => o.values().for_each(|x| leaves(x, strings, nums)),
        _ => {}
    }
}

fn pdftotext(path: &str) -> Result<Vec<String>, String> {
    let out = std::process::Command::new("pdftotext").args([path, "-"]).output().map_err(|e| e.to_string())?;
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let mut pages: Vec<String> = s.split('\x0c').map(String::from).collect();
    if pages.last().is_some_and(|p| p.trim().is_empty()) { pages.pop(); }
    Ok(pages)
}

fn pdf_extract(bytes: &[u8]) -> Result<Vec<String>, String> {
    let b = bytes.to_vec();
    std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem_by_pages(&b))
        .map_err(|_| "panic".to_string())?
        .map_err(|e| e.to_string())
}

fn lopdf_text(bytes: &[u8]) -> Result<Vec<String>, String> {
    let b = bytes.to_vec();
    std::panic::catch_unwind(move || {
        let doc = lopdf::Document::load_mem(&b).map_err(|e| e.to_string())?;
        let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
        Ok(pages.iter().map(|p| doc.extract_text(&[*p]).unwrap_or_default()).collect())
    })
    .map_err(|_| "panic".to_string())?
}

fn oxide(bytes: &[u8]) -> Result<Vec<String>, String> {
    let b = bytes.to_vec();
    std::panic::catch_unwind(move || {
        let doc = pdf_oxide::PdfDocument::from_bytes(b).map_err(|e| e.to_string())?;
        let n = doc.page_count().map_err(|e| e.to_string())?;
        Ok((0..n).map(|i| doc.extract_text(i).unwrap_or_default()).collect())
    })
    .map_err(|_| "panic".to_string())?
}

fn main() {
    std::panic::set_hook(Box::new(|_| {}));
    let root = std::env::args().nth(1).unwrap();
    let mut files = vec![];
    for e in walk(std::path::Path::new(&root)) {
        if e.extension().is_some_and(|x| x == "pdf") { files.push(e); }
    }
    files.sort();
    let readers = ["pdftotext", "pdf-extract", "lopdf", "pdf_oxide"];
    let mut tot = vec![(0usize, 0usize, 0usize, 0usize, 0f64, 0usize); readers.len()];
    println!("| document | pages | {} |", readers.iter().map(|r| format!("{r} str/num found, ms/page")).collect::<Vec<_>>().join(" | "));
    for f in &files {
        let gold: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f.with_extension("gold.json")).unwrap()).unwrap();
        let (mut strs, mut nums) = (vec![], vec![]);
        leaves(&gold, &mut strs, &mut nums);
        let bytes = std::fs::read(f).unwrap();
        let mut row = vec![];
        let mut pages_n = 0;
        for (i, r) in readers.iter().enumerate() {
            let t = Instant::now();
            let res = match *r {
                "pdftotext" => pdftotext(f.to_str().unwrap()),
                "pdf-extract" => pdf_extract(&bytes),
                "lopdf" => lopdf_text(&bytes),
                _ => oxide(&bytes),
            };
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            match res {
                Ok(pages) => {
                    if i == 0 { pages_n = pages.len(); }
                    let text = pages.join("\n");
                    if std::env::var("DUMP").is_ok() {
                        std::fs::write(format!("/tmp/pdfdump/{}.{}.txt", f.file_stem().unwrap().to_str().unwrap(), r), &text).ok();
                    }
                    let nt = norm(&text);
                    let ns = numbers(&text);
                    let sf = strs.iter().filter(|s| nt.contains(&norm(s))).count();
                    let nf = nums.iter().filter(|n| ns.contains(&((**n * 1000.0).round() as i64))).count();
                    let pc = pages.len().max(1);
                    tot[i].0 += sf; tot[i].1 += strs.len(); tot[i].2 += nf; tot[i].3 += nums.len(); tot[i].4 += ms; tot[i].5 += pc;
                    row.push(format!("{sf}/{} {nf}/{} {:.1}", strs.len(), nums.len(), ms / pc as f64));
                }
                Err(e) => { row.push(format!("error: {}", e.chars().take(40).collect::<String>())); tot[i].1 += strs.len(); tot[i].3 += nums.len(); }
            }
        }
        println!("| {} | {} | {} |", f.file_stem().unwrap().to_str().unwrap(), pages_n, row.join(" | "));
    }
    println!("| total | | {} |", tot.iter().map(|t| format!("{:.1}% str {:.1}% num, {:.1} ms/page", 100.0 * t.0 as f64 / t.1 as f64, 100.0 * t.2 as f64 / t.3.max(1) as f64, t.4 / t.5.max(1) as f64)).collect::<Vec<_>>().join(" | "));
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![];
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() { v.extend(walk(&e.unwrap().path())); }
    } else { v.push(p.to_path_buf()); }
    v
}
