//! States stored as text: [`crate::sql_enum!`] declares an enum whose variants are the values a
//! column may hold, so code passes `UnitState::Verified` instead of the string `'verified'`.
//!
//! The schema's `CHECK (state IN (...))` constraints list the same values; each enum's module
//! has a test that they agree (`check_values`), so neither can change alone.

/// Declares a `Copy` enum stored as TEXT: `as_str`, `ALL`, `Display`, and rusqlite's `ToSql` and
/// `FromSql` (an unknown value read from the database is a conversion error).
#[macro_export]
macro_rules! sql_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// Every value's text, in declaration order.
            pub const TEXTS: &'static [&'static str] = &[$($text,)+];

            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                match value.as_str()? {
                    $($text => Ok($name::$variant),)+
                    other => Err(rusqlite::types::FromSqlError::Other(
                        format!("unknown {} {other:?}", stringify!($name)).into(),
                    )),
                }
            }
        }
    };
}

/// The values the schema's `CHECK (column IN (...))` allows for `table.column`, in order (for
/// the tests that keep each enum and the schema in step).
#[cfg(test)]
fn check_values(schema: &str, table: &str, column: &str) -> Vec<String> {
    let start = schema
        .find(&format!("CREATE TABLE IF NOT EXISTS {table} ("))
        .unwrap_or_else(|| panic!("no table {table} in the schema"));
    let body = &schema[start..];
    let body = &body[..body.find("\n);").expect("a table ends with );")];
    let check = format!("CHECK ({column} IN (");
    let from = body
        .find(&check)
        .unwrap_or_else(|| panic!("no CHECK of {table}.{column} in the schema"))
        + check.len();
    let list = &body[from..from + body[from..].find(')').expect("the list ends")];
    list.split(',')
        .map(|value| value.trim().trim_matches('\'').to_string())
        .collect()
}

/// Asserts that `values` are exactly what the schema allows in `table.column`.
#[cfg(test)]
pub fn assert_matches_schema(table: &str, column: &str, values: &[&str]) {
    let schema = include_str!("store/schema.sql");
    assert_eq!(
        check_values(schema, table, column),
        values,
        "{table}.{column}: the enum and the schema's CHECK disagree"
    );
}
