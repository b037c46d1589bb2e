//! What a reindex invocation asks for, from the events that start it: S3 notifications
//! (`Records[].s3`), EventBridge "Object Created"/"Object Deleted" events, and the schedule.

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// The work an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Reindex every dataset of the config (the schedule, or an event of unknown shape).
    All,
    /// Reindex the datasets these objects (`s3://bucket/key`) belong to.
    Objects(Vec<String>),
}

/// The work `event` asks for.
pub fn work(event: &Value) -> Work {
    // S3 notifications: keys are URL-encoded, spaces as '+'.
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        let urls = records
            .iter()
            .filter_map(|r| {
                let bucket = r.pointer("/s3/bucket/name")?.as_str()?;
                let key = r.pointer("/s3/object/key")?.as_str()?.replace('+', " ");
                let key = percent_decode_str(&key).decode_utf8().ok()?;
                Some(format!("s3://{bucket}/{key}"))
            })
            .collect();
        return Work::Objects(urls);
    }
    // EventBridge object events: keys as they are.
    let bucket = event.pointer("/detail/bucket/name").and_then(Value::as_str);
    let key = event.pointer("/detail/object/key").and_then(Value::as_str);
    match (bucket, key) {
        (Some(b), Some(k)) => Work::Objects(vec![format!("s3://{b}/{k}")]),
        _ => Work::All,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn s3_notifications_eventbridge_and_the_schedule() {
        let s3 = json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
            "bucket": {"name": "data"}, "object": {"key": "src/tas+2001%2B.nc", "size": 3}}}]});
        assert_eq!(
            work(&s3),
            Work::Objects(vec!["s3://data/src/tas 2001+.nc".into()])
        );
        let bridge = json!({"detail-type": "Object Deleted", "source": "aws.s3",
            "detail": {"bucket": {"name": "data"}, "object": {"key": "src/a b.nc"}}});
        assert_eq!(
            work(&bridge),
            Work::Objects(vec!["s3://data/src/a b.nc".into()])
        );
        let schedule =
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        assert_eq!(work(&schedule), Work::All);
    }
}
