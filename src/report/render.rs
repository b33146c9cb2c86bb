//! The report document and its two renderings: a self-contained `index.html` (inline CSS, no
//! JavaScript, relative image paths) and an `index.md` that mirrors it. Pure: strings in,
//! strings out; every piece of text is escaped for its format.

use std::fmt::Write;

use super::tables::Table;

/// What a figure section shows.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// A PNG next to the index.
    Image {
        file: String,
        width: u32,
        height: u32,
        alt: String,
    },
    /// Why the figure was not drawn.
    Skipped(String),
    /// A section without a figure (e.g. the validation bound).
    Text(String),
}

/// One section: a heading, a sentence on how to read it, the figure (or why not), tables.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub id: String,
    pub heading: String,
    pub how_to_read: String,
    pub body: Body,
    pub tables: Vec<Table>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub sweep: String,
    pub description: String,
    pub generated_by: String,
    /// Run states, fit settings.
    pub overview: Vec<Table>,
    pub warnings: Vec<String>,
    pub sections: Vec<Section>,
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for Markdown (inline text and table cells): the characters that would start
/// code, emphasis, HTML or a table cell get a backslash; `_` only where it could delimit
/// emphasis (not inside words like `B_opt`, which CommonMark leaves alone, so the raw file stays
/// readable); `]` where a link could form; `#` at the start; line breaks become spaces.
pub fn md_esc(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let word = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_some_and(|c| c.is_alphanumeric())
        };
        let escape = match c {
            '\\' | '`' | '*' | '<' | '>' | '|' => true,
            '_' => !(word(i.checked_sub(1)) && word(Some(i + 1))),
            // A link needs `](` or `][`: breaking those is enough ("[0.95, 1.00]" stays).
            ']' => matches!(chars.get(i + 1), Some('(' | '[')),
            '#' => i == 0,
            _ => false,
        };
        match c {
            '\n' | '\r' => out.push(' '),
            c => {
                if escape {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// Whether a cell reads as a number (right-aligned in HTML).
fn numeric(s: &str) -> bool {
    let t = s.trim_start_matches(['≤', '≥', '±', ' ', '[', '(']);
    t.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '−' || c == '–' || c == '<')
}

const CSS: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;max-width:1320px;\
margin:2em auto;padding:0 1em;color:#1a1a1a;line-height:1.45}\
h1{margin-bottom:.2em}h2{margin-top:2.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
.desc{font-size:1.1em}.gen{color:#555}\
.how{background:#f4f8fb;border-left:4px solid #0072b2;padding:.5em 1em}\
.skipped{background:#fff6e6;border-left:4px solid #e69f00;padding:.5em 1em}\
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #ddd}\
table{border-collapse:collapse;margin:.6em 0 .3em;font-size:.95em}\
caption{text-align:left;font-weight:bold;padding:.3em 0}\
th,td{border:1px solid #ccc;padding:.25em .6em;vertical-align:top}th{background:#f2f2f2}\
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.note{color:#444;font-size:.92em;margin:.2em 0 1.4em;max-width:70em}\
nav ol{columns:2}footer{margin-top:3em;color:#666;font-size:.9em}";

fn html_table(out: &mut String, t: &Table) {
    let _ = writeln!(out, "<table>\n<caption>{}</caption>", esc(&t.caption));
    out.push_str("<thead><tr>");
    for h in &t.header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in &t.rows {
        out.push_str("<tr>");
        for c in r {
            if numeric(c) {
                let _ = write!(out, "<td class=\"num\">{}</td>", esc(c));
            } else {
                let _ = write!(out, "<td>{}</td>", esc(c));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    if let Some(n) = &t.note {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(n));
    }
}

/// The self-contained HTML page.
pub fn render_html(doc: &Document) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>scalelab report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>",
        esc(&doc.sweep)
    );
    let _ = writeln!(out, "<header>\n<h1>Sweep {}</h1>", esc(&doc.sweep));
    if !doc.description.trim().is_empty() {
        let _ = writeln!(out, "<p class=\"desc\">{}</p>", esc(&doc.description));
    }
    let _ = writeln!(
        out,
        "<p class=\"gen\">Generated by {}.</p>\n</header>",
        esc(&doc.generated_by)
    );
    out.push_str("<section id=\"overview\">\n<h2>Runs and fit settings</h2>\n");
    for t in &doc.overview {
        html_table(&mut out, t);
    }
    if !doc.warnings.is_empty() {
        out.push_str("<p class=\"skipped\">Warnings from the fits:</p>\n<ul>\n");
        for w in &doc.warnings {
            let _ = writeln!(out, "<li>{}</li>", esc(w));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n<nav>\n<h2>Contents</h2>\n<ol>\n");
    for s in &doc.sections {
        let _ = writeln!(
            out,
            "<li><a href=\"#{}\">{}</a></li>",
            esc(&s.id),
            esc(&s.heading)
        );
    }
    out.push_str("</ol>\n</nav>\n");
    for s in &doc.sections {
        let _ = writeln!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>\n<p class=\"how\"><b>How to read it.</b> {}</p>",
            esc(&s.id),
            esc(&s.heading),
            esc(&s.how_to_read)
        );
        match &s.body {
            Body::Image {
                file,
                width,
                height,
                alt,
            } => {
                let _ = writeln!(
                    out,
                    "<figure><img src=\"{}\" width=\"{width}\" height=\"{height}\" alt=\"{}\"></figure>",
                    esc(file),
                    esc(alt)
                );
            }
            Body::Skipped(why) => {
                let _ = writeln!(
                    out,
                    "<p class=\"skipped\"><b>Not drawn:</b> {}</p>",
                    esc(why)
                );
            }
            Body::Text(text) => {
                let _ = writeln!(out, "<p>{}</p>", esc(text));
            }
        }
        for t in &s.tables {
            html_table(&mut out, t);
        }
        out.push_str("</section>\n");
    }
    let _ = writeln!(
        out,
        "<footer>Generated by {}. Figures are PNG files next to this page.</footer>\n</body>\n</html>",
        esc(&doc.generated_by)
    );
    out
}

fn md_table(out: &mut String, t: &Table) {
    let _ = writeln!(out, "**{}**\n", md_esc(&t.caption));
    let row = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| md_esc(c)).collect();
        format!("| {} |", cells.join(" | "))
    };
    let _ = writeln!(out, "{}", row(&t.header));
    let _ = writeln!(
        out,
        "|{}",
        t.header.iter().map(|_| " --- |").collect::<String>()
    );
    for r in &t.rows {
        let _ = writeln!(out, "{}", row(r));
    }
    out.push('\n');
    if let Some(n) = &t.note {
        let _ = writeln!(out, "{}\n", md_esc(n));
    }
}

/// The Markdown mirror of the page.
pub fn render_markdown(doc: &Document) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Sweep {}\n", md_esc(&doc.sweep));
    if !doc.description.trim().is_empty() {
        let _ = writeln!(out, "{}\n", md_esc(&doc.description));
    }
    let _ = writeln!(out, "*Generated by {}.*\n", md_esc(&doc.generated_by));
    out.push_str("## Runs and fit settings\n\n");
    for t in &doc.overview {
        md_table(&mut out, t);
    }
    if !doc.warnings.is_empty() {
        out.push_str("Warnings from the fits:\n\n");
        for w in &doc.warnings {
            let _ = writeln!(out, "- {}", md_esc(w));
        }
        out.push('\n');
    }
    for s in &doc.sections {
        let _ = writeln!(out, "## {}\n", md_esc(&s.heading));
        let _ = writeln!(out, "*How to read it.* {}\n", md_esc(&s.how_to_read));
        match &s.body {
            Body::Image { file, alt, .. } => {
                // The file name is ours (figN-slug.png): no escaping needed in the link.
                let _ = writeln!(out, "![{}]({file})\n", md_esc(alt));
            }
            Body::Skipped(why) => {
                let _ = writeln!(out, "> **Not drawn:** {}\n", md_esc(why));
            }
            Body::Text(text) => {
                let _ = writeln!(out, "{}\n", md_esc(text));
            }
        }
        for t in &s.tables {
            md_table(&mut out, t);
        }
    }
    let _ = writeln!(out, "---\n\n*Generated by {}.*", md_esc(&doc.generated_by));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        Document {
            sweep: "a<b>&\"c\"".into(),
            description: "ε sweep | with pipes\nand lines".into(),
            generated_by: "scalelab 0.1.0".into(),
            overview: vec![Table {
                caption: "Run states".into(),
                header: vec!["state".into(), "runs".into()],
                rows: vec![vec!["<completed>".into(), "84".into()]],
                note: None,
            }],
            warnings: vec!["w & w".into()],
            sections: vec![
                Section {
                    id: "fig1".into(),
                    heading: "1. Metric".into(),
                    how_to_read: "read *this*".into(),
                    body: Body::Image {
                        file: "fig1-x.png".into(),
                        width: 1200,
                        height: 800,
                        alt: "alt \"text\"".into(),
                    },
                    tables: vec![],
                },
                Section {
                    id: "fig2".into(),
                    heading: "2. Skipped".into(),
                    how_to_read: "r".into(),
                    body: Body::Skipped("N <does> not vary".into()),
                    tables: vec![],
                },
            ],
        }
    }

    #[test]
    fn html_escapes_everything_and_has_no_script_or_remote_resource() {
        let html = render_html(&doc());
        assert!(html.contains("Sweep a&lt;b&gt;&amp;&quot;c&quot;"));
        assert!(html.contains("&lt;completed&gt;"));
        assert!(html.contains("<td class=\"num\">84</td>"));
        assert!(html.contains("src=\"fig1-x.png\" width=\"1200\" height=\"800\""));
        assert!(html.contains("alt=\"alt &quot;text&quot;\""));
        assert!(html.contains("N &lt;does&gt; not vary"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<b>&"), "unescaped sweep name");
    }

    #[test]
    fn markdown_mirrors_with_escapes() {
        let md = render_markdown(&doc());
        assert!(md.contains("![alt \"text\"](fig1-x.png)"));
        assert!(md.contains("ε sweep \\| with pipes and lines"));
        assert!(md.contains("| \\<completed\\> | 84 |"));
        assert!(md.contains("> **Not drawn:** N \\<does\\> not vary"));
        assert!(md.contains("read \\*this\\*"));
        assert_eq!(md_esc("B_opt _x_ #1 # a"), "B_opt \\_x\\_ #1 # a");
        assert_eq!(md_esc("#h"), "\\#h");
        assert_eq!(md_esc("[0.9, 1.0] [a](b)"), "[0.9, 1.0] [a\\](b)");
    }
}
