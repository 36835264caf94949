//! Prometheus text exposition (format 0.0.4), written by hand: the agent
//! exports a few dozen series, which does not justify a metrics framework
//! in an edge binary.

use std::fmt::Write;

/// Builds one `/metrics` page. Each family is declared once, then sampled.
#[derive(Default)]
pub struct MetricsPage {
    out: String,
}

pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricsPage {
    pub fn family(&mut self, name: &str, help: &str, ty: MetricType) -> &mut Self {
        let ty = match ty {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {ty}");
        self
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<f64>) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value.into()));
        self
    }

    /// A family with one series per item, each labelled `label` with the
    /// name `f` gives it.
    pub fn each<T>(
        &mut self,
        name: &str,
        help: &str,
        ty: MetricType,
        label: &str,
        items: &[T],
        f: impl Fn(&T) -> (&str, f64),
    ) -> &mut Self {
        self.family(name, help, ty);
        for item in items {
            let (value_label, value) = f(item);
            self.sample(name, &[(label, value_label)], value);
        }
        self
    }

    /// Writes a histogram's `_bucket`, `_sum` and `_count` series.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) -> &mut Self {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (bound, count) in h.bounds.iter().zip(&h.counts) {
            cumulative += count;
            let le = format_value(*bound);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, cumulative as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, h.count as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A histogram's state at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the finite buckets, ascending.
    pub bounds: Vec<f64>,
    /// Observations per finite bucket (not cumulative).
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl HistogramSnapshot {
    pub fn with_bounds(bounds: &[f64]) -> Self {
        HistogramSnapshot {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += v;
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Resident set size of this process in bytes, from /proc.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_labels_and_histograms() {
        let mut h = HistogramSnapshot::with_bounds(&[0.01, 0.1]);
        h.observe(0.005);
        h.observe(0.05);
        h.observe(3.0);
        let mut page = MetricsPage::default();
        page.family("x_total", "Things.", MetricType::Counter)
            .sample("x_total", &[("kind", "Pod \"a\"")], 3u32)
            .family("d_seconds", "Durations.", MetricType::Histogram)
            .histogram("d_seconds", &[("module", "m")], &h);
        let text = page.finish();
        assert_eq!(
            text,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{kind=\"Pod \\\"a\\\"\"} 3\n\
             # HELP d_seconds Durations.\n# TYPE d_seconds histogram\n\
             d_seconds_bucket{module=\"m\",le=\"0.01\"} 1\nd_seconds_bucket{module=\"m\",le=\"0.1\"} 2\n\
             d_seconds_bucket{module=\"m\",le=\"+Inf\"} 3\nd_seconds_sum{module=\"m\"} 3.055\nd_seconds_count{module=\"m\"} 3\n"
        );
    }
}
