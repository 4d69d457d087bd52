//! A synthetic product catalogue, for benchmarks, tests and the `silo`
//! command's demo: documents of eleven fields, numeric scores and dates,
//! low- and high-cardinality strings, and a multi-value tag field whose
//! counts and values follow Zipf distributions. Document `id` is the same
//! for the same seed on every machine and in any order of generation.
//!
//! ```
//! use silo_engine::catalog::Catalog;
//! let c = Catalog::new(7);
//! assert_eq!(c.document(42), c.document(42));
//! assert!(c.json_line(42).starts_with("{\"id\":42,"));
//! c.schema().validate()?;
//! # Ok::<(), silo_engine::EngineError>(())
//! ```

use silo_format::Value;

use crate::index::{FieldSpec, FieldType, Schema};

/// Categories (low cardinality).
const CATEGORIES: usize = 20;
/// Colours (low cardinality).
const COLORS: [&str; 12] = [
    "black", "white", "red", "blue", "green", "yellow", "grey", "brown", "pink", "purple",
    "orange", "silver",
];
/// Brands (high cardinality, Zipf).
const BRANDS: usize = 10_000;
/// Distinct tags (Zipf).
const TAGS: usize = 5_000;
/// Most tags a document has.
const MAX_TAGS: usize = 8;
/// Seconds from 2020-01-01 to the catalogue's last date (about five years).
const DATE_SPAN: u64 = 5 * 365 * 86_400;
/// 2020-01-01T00:00:00Z.
const EPOCH_2020: i64 = 1_577_836_800;

/// A Zipf distribution over `1..=n` with exponent `s`, sampled by binary
/// search over its cumulative weights.
#[derive(Clone, Debug)]
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    /// A rank from 0 (the most frequent) to n - 1, for `u` in [0, 1).
    fn sample(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|c| *c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// SplitMix64: a small, well-mixed generator.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The catalogue generator. See the module documentation.
#[derive(Clone, Debug)]
pub struct Catalog {
    seed: u64,
    brands: Zipf,
    tags: Zipf,
    tag_counts: Zipf,
}

impl Catalog {
    /// The catalogue of `seed`.
    pub fn new(seed: u64) -> Catalog {
        Catalog {
            seed,
            brands: Zipf::new(BRANDS, 1.05),
            tags: Zipf::new(TAGS, 1.1),
            tag_counts: Zipf::new(MAX_TAGS + 1, 1.2),
        }
    }

    /// The schema of the catalogue's documents.
    pub fn schema(&self) -> Schema {
        Schema::new(vec![
            FieldSpec::filter("category", FieldType::Str),
            FieldSpec::filter("brand", FieldType::Str),
            FieldSpec::filter("color", FieldType::Str),
            FieldSpec::sort("price", FieldType::F64),
            FieldSpec {
                sort: true,
                ..FieldSpec::filter("rating", FieldType::U64)
            },
            FieldSpec::sort("created", FieldType::I64),
            FieldSpec::filter("in_stock", FieldType::Bool),
            FieldSpec::filter("tags", FieldType::Tags),
            FieldSpec::sort("popularity", FieldType::U64),
            FieldSpec::stored("title", FieldType::Str),
        ])
    }

    /// Document `id`: its fields in schema order (every field present
    /// except `tags` when it draws none).
    pub fn document(&self, id: u32) -> Vec<(&'static str, Value)> {
        let mut r = Mix(self.seed ^ u64::from(id).wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        let category = r.below(CATEGORIES as u64);
        let brand = self.brands.sample(r.unit());
        let color = COLORS[usize::try_from(r.below(COLORS.len() as u64)).unwrap_or(0)];
        // Prices from 1 to ~10,000, most of them low (log-uniform).
        let price = (10f64.powf(r.unit() * 4.0) * 100.0).round() / 100.0;
        let rating = r.below(51);
        let created = EPOCH_2020 + i64::try_from(r.below(DATE_SPAN)).unwrap_or(0);
        let in_stock = r.below(10) < 8;
        let count = self.tag_counts.sample(r.unit());
        let mut tags: Vec<i64> = (0..count)
            .map(|_| i64::try_from(self.tags.sample(r.unit())).unwrap_or(0))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        // Popularity: heavy-tailed.
        let popularity = 1_000_000 / (1 + r.below(1_000_000));
        let mut doc = vec![
            ("category", Value::Str(format!("category-{category:02}"))),
            ("brand", Value::Str(format!("brand-{brand:05}"))),
            ("color", Value::Str(color.to_owned())),
            ("price", Value::F64(price)),
            ("rating", Value::U64(rating)),
            ("created", Value::I64(created)),
            ("in_stock", Value::Bool(in_stock)),
        ];
        if !tags.is_empty() {
            doc.push((
                "tags",
                Value::I64List {
                    items: tags,
                    reset: false,
                },
            ));
        }
        doc.push(("popularity", Value::U64(popularity)));
        doc.push((
            "title",
            Value::Str(format!("{color} item {id} by brand-{brand:05}")),
        ));
        doc
    }

    /// Document `id` as one line of JSON (no newline), as
    /// [`crate::Index::import_json_lines`] reads it.
    pub fn json_line(&self, id: u32) -> String {
        let mut out = format!("{{\"id\":{id}");
        for (name, value) in self.document(id) {
            let v = match value {
                Value::Str(s) => serde_json::Value::from(s),
                Value::F64(f) => serde_json::Value::from(f),
                Value::U64(u) => serde_json::Value::from(u),
                Value::I64(i) => serde_json::Value::from(i),
                Value::Bool(b) => serde_json::Value::from(b),
                Value::I64List { items, .. } => serde_json::Value::from(items),
                _ => serde_json::Value::Null,
            };
            out.push_str(&format!(",\"{name}\":{v}"));
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_deterministic_valid_and_skewed() {
        let c = Catalog::new(1);
        let schema = c.schema();
        schema.validate().unwrap();
        let mut brand0 = 0;
        let mut tag0 = 0;
        let mut tagged = 0;
        for id in 0..20_000u32 {
            let doc = c.document(id);
            assert_eq!(doc, c.document(id));
            for (name, value) in &doc {
                let spec = schema.field(name).unwrap();
                assert!(spec.ty.matches(&value.as_ref()), "{name}: {value:?}");
            }
            if doc
                .iter()
                .any(|(n, v)| *n == "brand" && *v == Value::Str("brand-00000".into()))
            {
                brand0 += 1;
            }
            if let Some((_, Value::I64List { items, .. })) = doc.iter().find(|(n, _)| *n == "tags")
            {
                tagged += 1;
                assert!(items.len() <= MAX_TAGS);
                tag0 += usize::from(items.contains(&0));
            }
        }
        // Zipf heads: the first brand and tag are far above uniform.
        assert!(
            brand0 > 20_000 / BRANDS * 50,
            "brand-00000 in {brand0} documents"
        );
        assert!(tag0 > 20_000 / TAGS * 50, "tag 0 in {tag0} documents");
        assert!(tagged > 10_000 && tagged < 20_000, "{tagged} tagged");
        assert_ne!(Catalog::new(2).document(5), c.document(5));
        let line = c.json_line(3);
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["id"], 3);
    }
}
