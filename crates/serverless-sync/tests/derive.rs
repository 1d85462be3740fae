//! `#[derive(Collection)]` builds the same collection as the builder, from the row
//! struct alone.

use sync::{Collection, ColumnType, SyncModel};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, sync::Collection)]
#[collection(name = "notes", index = "board_id, created_at, id", index = "author")]
pub struct Note {
    pub id: String,
    pub board_id: String,
    #[collection(max_bytes = 2000)]
    pub text: String,
    pub author: String,
    pub done: bool,
    pub stars: i32,
    pub weight: f64,
    pub meta: serde_json::Value,
    #[collection(json)]
    pub tags: Vec<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, sync::Collection)]
#[collection(name = "cards", id = "card_key")]
pub struct Card {
    pub card_key: String,
    pub r#type: String,
}

#[test]
fn a_derived_collection_equals_the_one_built_by_hand() {
    let by_hand = Collection::new("notes", "id")
        .column("id", ColumnType::Text)
        .column("board_id", ColumnType::Text)
        .column("text", ColumnType::Text)
        .column("author", ColumnType::Text)
        .column("done", ColumnType::Boolean)
        .column("stars", ColumnType::Integer)
        .column("weight", ColumnType::Real)
        .column("meta", ColumnType::Json)
        .column("tags", ColumnType::Json)
        .column("created_at", ColumnType::Integer)
        .max_bytes("text", 2000)
        .index(&["board_id", "created_at", "id"])
        .index(&["author"]);
    assert_eq!(Note::collection(), by_hand);
    assert_eq!(Note::COLLECTION, "notes");
}

#[test]
fn the_primary_key_and_raw_names_are_the_fields() {
    let cards = Card::collection();
    assert_eq!(cards.primary_key, "card_key");
    assert_eq!(cards.column_type("type"), Some(ColumnType::Text));
    let model = SyncModel::builder().collection(Card::collection()).build();
    assert!(model.is_ok(), "a derived collection builds a model: {:?}", model.err());
}
