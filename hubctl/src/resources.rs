//! `hubctl connection-string | sas | twin | rule | alert ...`.

use std::time::Duration;

use hub_service_sdk::ServiceClient;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::sas::SymmetricKey;
use serde_json::{Value, json};

use crate::CliError;
use crate::cli::{
    AlertCommand, ConnectionStringCommand, JsonInput, KeySlot, MethodArgs, QueryArgs, RuleCommand,
    SasArgs, TwinCommand,
};
use crate::output::Printer;

const RULE_COLUMNS: &[(&str, &str)] = &[
    ("rule", "id"),
    ("enabled", "enabled"),
    ("field", "condition.field"),
    ("operator", "condition.operator"),
    ("threshold", "condition.threshold"),
    ("learned", "condition.learned"),
    ("description", "description"),
];

const ALERT_COLUMNS: &[(&str, &str)] = &[
    ("rule", "ruleId"),
    ("device", "deviceId"),
    ("active", "active"),
    ("severity", "severity"),
    ("field", "field"),
    ("value", "lastValue"),
    ("expected high", "expectedHigh"),
    ("score", "score"),
    ("raised", "raisedAt"),
];

fn read_json(input: &JsonInput) -> Result<Value, CliError> {
    let text = match (&input.json, &input.file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?,
        (None, None) => return Err(CliError::Usage("give --json or --file".into())),
    };
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("not JSON: {e}")))
}

/// A device's key, read through the registry.
async fn device_key(
    hub: &ServiceClient,
    device: &str,
    slot: KeySlot,
) -> Result<(DeviceId, SymmetricKey), CliError> {
    let description = hub.get_device(device).await?;
    let pair = description
        .authentication
        .and_then(|a| a.symmetric_key)
        .unwrap_or_default();
    let key = match slot {
        KeySlot::Secondary => pair.secondary_key,
        KeySlot::Primary | KeySlot::Both => pair.primary_key,
    }
    .ok_or_else(|| CliError::Usage(format!("device {device} has no such key")))?;
    let key = SymmetricKey::from_base64(&key)
        .map_err(|e| CliError::Usage(format!("the registry's key is not valid: {e}")))?;
    let id = DeviceId::parse(device).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok((id, key))
}

pub async fn connection_string(
    hub: &ServiceClient,
    command: &ConnectionStringCommand,
    printer: &Printer,
) -> Result<(), CliError> {
    let ConnectionStringCommand::Show { device, key } = command;
    let text = match device {
        Some(device) => {
            let (id, key) = device_key(hub, device, *key).await?;
            hub.device_connection_string(&id, &key)
        }
        None => {
            return Err(CliError::Usage(
                "a policy's connection string is the one you gave; use --device for a device's"
                    .into(),
            ));
        }
    };
    printer.line(&text, &json!({"connectionString": text}));
    Ok(())
}

pub async fn sas(hub: &ServiceClient, args: &SasArgs, printer: &Printer) -> Result<(), CliError> {
    let ttl = Duration::from_secs(args.ttl.max(1));
    let token = match &args.device {
        Some(device) => {
            let (id, key) = device_key(hub, device, KeySlot::Primary).await?;
            hub.device_token(&id, &key, ttl)
        }
        None => hub.policy_token(ttl),
    };
    printer.line(&token, &json!({"sas": token}));
    Ok(())
}

pub async fn twin(
    hub: &ServiceClient,
    command: &TwinCommand,
    printer: &Printer,
) -> Result<(), CliError> {
    let twin = match command {
        TwinCommand::Show { id } => hub.twin(id).await?,
        TwinCommand::Update { id, document, etag } => {
            hub.patch_twin(id, &read_json(document)?, etag.as_deref())
                .await?
        }
        TwinCommand::Replace { id, document, etag } => {
            hub.replace_twin(id, &read_json(document)?, etag.as_deref())
                .await?
        }
    };
    printer.document(&twin);
    Ok(())
}

/// The columns of a twin query's rows: a twin's identity and tags, or else every key the rows
/// hold (projections and groups), in the order first seen.
fn query_columns(rows: &[Value]) -> Vec<(String, String)> {
    if rows
        .iter()
        .all(|r| r.get("properties").is_some() && r.get("deviceId").is_some())
    {
        return [
            ("DEVICE", "deviceId"),
            ("STATUS", "status"),
            ("CONNECTION", "connectionState"),
            ("LAST ACTIVITY", "lastActivityTime"),
            ("TAGS", "tags"),
        ]
        .map(|(title, path)| (title.to_owned(), path.to_owned()))
        .to_vec();
    }
    let mut columns: Vec<(String, String)> = Vec::new();
    for key in rows
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|r| r.keys())
    {
        if !columns.iter().any(|(_, k)| k == key) {
            columns.push((key.to_uppercase(), key.clone()));
        }
    }
    columns
}

pub async fn query(
    hub: &ServiceClient,
    args: &QueryArgs,
    printer: &Printer,
) -> Result<(), CliError> {
    let mut rows = Vec::new();
    let mut continuation: Option<String> = None;
    let max = args.max.unwrap_or(usize::MAX);
    loop {
        let (page, next) = hub
            .query(&args.query, args.page_size, continuation.as_deref())
            .await?;
        rows.extend(page);
        match next {
            Some(token) if rows.len() < max => continuation = Some(token),
            _ => break,
        }
    }
    rows.truncate(max);
    let columns = query_columns(&rows);
    let columns: Vec<(&str, &str)> = columns
        .iter()
        .map(|(title, key)| (title.as_str(), key.as_str()))
        .collect();
    printer.table(&columns, &rows);
    Ok(())
}

pub async fn method(
    hub: &ServiceClient,
    args: &MethodArgs,
    printer: &Printer,
) -> Result<(), CliError> {
    let payload: Value = serde_json::from_str(&args.payload)
        .map_err(|e| CliError::Usage(format!("--payload is not JSON: {e}")))?;
    let answer = hub
        .invoke_method(
            &args.id,
            &args.name,
            &payload,
            std::time::Duration::from_secs(args.response_timeout),
            std::time::Duration::from_secs(args.connect_timeout),
        )
        .await?;
    printer.document(&answer);
    Ok(())
}

fn rows(value: &Value, key: &str) -> Vec<Value> {
    value
        .as_array()
        .or_else(|| value[key].as_array())
        .cloned()
        .unwrap_or_default()
}

pub async fn rule(
    hub: &ServiceClient,
    command: &RuleCommand,
    printer: &Printer,
) -> Result<(), CliError> {
    match command {
        RuleCommand::List => printer.table(RULE_COLUMNS, &rows(&hub.rules().await?, "rules")),
        RuleCommand::Show { id } => printer.document(&hub.rule(id).await?),
        RuleCommand::Put { id, document } => {
            printer.document(&hub.put_rule(id, &read_json(document)?).await?)
        }
        RuleCommand::Delete { id } => {
            hub.delete_rule(id).await?;
            printer.line(&format!("deleted rule {id}"), &json!({"deleted": id}));
        }
    }
    Ok(())
}

pub async fn alert(
    hub: &ServiceClient,
    command: &AlertCommand,
    printer: &Printer,
) -> Result<(), CliError> {
    let AlertCommand::List { all } = command;
    printer.table(ALERT_COLUMNS, &rows(&hub.alerts(!all).await?, "alerts"));
    Ok(())
}
