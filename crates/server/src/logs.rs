//! Log output: a filter from the `log` setting (RUST_LOG wins), as plain text or as one JSON
//! object per line (`log_format = "json"`), on stderr.

/// Installs the global subscriber; a second call (tests) changes nothing.
pub fn init(filter: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if format == "json" {
        // The request's span (method, path, request id) goes into every line of that request.
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            // Colour only for a terminal: logs piped to a file or a journal stay plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    // Already installed (several servers in one test process): keep the first.
    let _ = result;
}
