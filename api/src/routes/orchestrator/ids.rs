//! Public ids: a prefix and the row's number (`db-7`, `mig-12`). An id of
//! the wrong shape is simply unknown (404), like a number that names no
//! row of the caller's tenant.

use crate::error::ApiError;

pub const DATABASE: &str = "db";
pub const MIGRATION: &str = "mig";
pub const EXECUTION: &str = "exec";
pub const APPROVAL: &str = "appr";

pub fn format(prefix: &str, n: i64) -> String {
    format!("{prefix}-{n}")
}

/// The row number of `id`, if it has `prefix`'s shape.
pub fn parse(prefix: &str, id: &str) -> Option<i64> {
    id.strip_prefix(prefix)?
        .strip_prefix('-')?
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
}

/// The row number of `id`, or 404 naming `what`.
pub fn require(prefix: &str, id: &str, what: &str) -> Result<i64, ApiError> {
    parse(prefix, id).ok_or_else(|| ApiError::not_found(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_shapes() {
        assert_eq!(parse(MIGRATION, &format(MIGRATION, 42)), Some(42));
        assert_eq!(parse(MIGRATION, "db-42"), None);
        assert_eq!(parse(MIGRATION, "mig-"), None);
        assert_eq!(parse(MIGRATION, "mig-0"), None);
        assert_eq!(parse(MIGRATION, "mig-x1"), None);
    }
}
