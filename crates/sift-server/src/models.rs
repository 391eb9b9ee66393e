//! The seed's request and response bodies.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::request::{ErrorDetail, FromBody, object, string_field, string_list_field};

/// `POST /user` and `POST /extract`: one text to extract from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserData {
    /// Free text describing one or more people.
    #[schema(example = "Daniel is a 24 year man living in New York City")]
    pub query: String,
}

impl FromBody for UserData {
    fn from_body(body: &Value) -> Result<Self, Vec<ErrorDetail>> {
        let obj = object(body)?;
        let mut errors = Vec::new();
        let query = string_field(obj, body, "query", &mut errors);
        match query {
            Some(query) if errors.is_empty() => Ok(Self { query }),
            _ => Err(errors),
        }
    }
}

/// `POST /many-users`: several texts, each describing one person.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MultipleUserData {
    /// The texts, answered in this order.
    #[schema(example = json!(["Sarah is a 20 year old living in Tokyo", "Jeffrey is 55 and lives down in Leeds"]))]
    pub queries: Vec<String>,
}

impl FromBody for MultipleUserData {
    fn from_body(body: &Value) -> Result<Self, Vec<ErrorDetail>> {
        let obj = object(body)?;
        let mut errors = Vec::new();
        let queries = string_list_field(obj, body, "queries", &mut errors);
        match queries {
            Some(queries) if errors.is_empty() => Ok(Self { queries }),
            _ => Err(errors),
        }
    }
}

/// A person extracted from text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, schemars::JsonSchema)]
pub struct UserDetail {
    /// The person's name.
    pub name: String,
    /// The person's age in years.
    #[schemars(range(max = 150))]
    #[schema(minimum = 0, maximum = 150)]
    pub age: u32,
}
