//! The core's request log on the Worker's console: one line per request, as JSON (the Workers
//! dashboard and `wrangler tail` parse it) or text.

use std::io::Write;

use cloudify_core::config::LogFormat;
use tracing_subscriber::fmt::MakeWriter;

/// One log line, written to the console when the formatter is done with it.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let text = text.trim_end();
        if !text.is_empty() {
            worker::console_log!("{text}");
        }
    }
}

/// Makes a [`Line`] per event.
struct Console;

impl<'a> MakeWriter<'a> for Console {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}

/// Log the core's request lines to the console in `format`; once per isolate.
pub fn init(format: LogFormat) {
    cloudify_core::log::init(format, Console, false);
}
