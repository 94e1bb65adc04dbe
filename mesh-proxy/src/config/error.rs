//! The error list a user sees: one line per problem, each naming the file,
//! the key path (YAML names and indexes) and the cause.

use std::fmt;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `listeners[1].routes[0].cluster`; empty for the file itself.
    pub path: String,
    /// Lowercase, no trailing period, names the bad value.
    pub message: String,
    /// 1-based line and column, when known (YAML errors, unknown keys).
    pub line_col: Option<(usize, usize)>,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            line_col: None,
        }
    }

    pub fn with_line_col(mut self, line_col: Option<(usize, usize)>) -> Self {
        self.line_col = line_col;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one config file; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file as the user named it, e.g. `proxy.yaml`.
    pub source: String,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn new(source: impl Into<String>, errors: Vec<ConfigError>) -> Self {
        Self {
            source: source.into(),
            errors,
        }
    }
}

impl fmt::Display for ConfigErrors {
    /// One line per problem: `proxy.yaml:12:5: listeners[0].timout: unknown key "timout"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match error.line_col {
                Some((line, col)) => write!(f, "{}:{line}:{col}: {error}", self.source)?,
                None => write!(f, "{}: {error}", self.source)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_one_problem_per_line_with_optional_location() {
        let errors = ConfigErrors::new(
            "proxy.yaml",
            vec![
                ConfigError::new(
                    "listeners[1].routes[0].cluster",
                    "unknown cluster \"paymnts\" (did you mean \"payments\"?)",
                ),
                ConfigError::new(
                    "listeners[0].timout",
                    "unknown key \"timout\" (did you mean \"timeout\"?)",
                )
                .with_line_col(Some((12, 5))),
                ConfigError::new("", "cannot read config file: denied"),
            ],
        );
        assert_eq!(
            errors.to_string(),
            "proxy.yaml: listeners[1].routes[0].cluster: unknown cluster \"paymnts\" \
             (did you mean \"payments\"?)\n\
             proxy.yaml:12:5: listeners[0].timout: unknown key \"timout\" \
             (did you mean \"timeout\"?)\n\
             proxy.yaml: cannot read config file: denied"
        );
    }
}
