//! `hubctl device ...`: the identity registry, one device or thousands.

use std::io::{BufRead, Write};

use hub_service_sdk::ServiceClient;
use hub_shared::domain::device::{
    Authentication, AuthenticationType, DeviceDescription, DeviceStatus, SymmetricKeyPair,
};
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::registry::{ExportImportDevice, ImportMode};
use hub_shared::domain::sas::SymmetricKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::CliError;
use crate::cli::{DeviceCommand, FileFormat, ImportAs, KeySlot, Status};
use crate::output::Printer;

/// Devices per bulk request when importing. Azure allows 100, but the registry applies them one
/// after another within one invocation: 25 keeps a request well inside the function's timeout
/// even on a slow store (an emulator applies ~9 a second), at four requests instead of one.
const IMPORT_CHUNK: usize = 25;

const DEVICE_COLUMNS: &[(&str, &str)] = &[
    ("device", "deviceId"),
    ("status", "status"),
    ("last activity", "lastActivityTime"),
    ("queued C2D", "cloudToDeviceMessageCount"),
    ("etag", "etag"),
];

fn parse_id(id: &str) -> Result<DeviceId, CliError> {
    DeviceId::parse(id).map_err(|e| CliError::Usage(format!("{id:?}: {e}")))
}

fn keys(primary: Option<&str>, secondary: Option<&str>) -> Result<Authentication, CliError> {
    for key in [primary, secondary].into_iter().flatten() {
        SymmetricKey::from_base64(key)
            .map_err(|e| CliError::Usage(format!("the key is not valid: {e}")))?;
    }
    Ok(Authentication {
        kind: AuthenticationType::Sas,
        symmetric_key: Some(SymmetricKeyPair {
            primary_key: primary.map(str::to_owned),
            secondary_key: secondary.map(str::to_owned),
        }),
        x509_thumbprint: None,
    })
}

fn to_json(description: &DeviceDescription) -> Value {
    serde_json::to_value(description).unwrap_or_default()
}

pub async fn run(
    hub: &ServiceClient,
    command: &DeviceCommand,
    printer: &Printer,
) -> Result<(), CliError> {
    match command {
        DeviceCommand::Create {
            id,
            disabled,
            primary_key,
            secondary_key,
        } => {
            let description = DeviceDescription {
                device_id: Some(parse_id(id)?),
                status: Some(if *disabled {
                    DeviceStatus::Disabled
                } else {
                    DeviceStatus::Enabled
                }),
                authentication: Some(keys(primary_key.as_deref(), secondary_key.as_deref())?),
                ..Default::default()
            };
            let created = hub.put_device(&description, None).await?;
            printer.document(&to_json(&created));
        }
        DeviceCommand::Show { id } => printer.document(&to_json(&hub.get_device(id).await?)),
        DeviceCommand::List { top, all } => {
            let mut rows = Vec::new();
            let mut continuation: Option<String> = None;
            loop {
                let (page, next) = hub.list_devices(*top, continuation.as_deref()).await?;
                rows.extend(page.iter().map(to_json));
                match next {
                    Some(token) if *all => continuation = Some(token),
                    _ => break,
                }
            }
            printer.table(DEVICE_COLUMNS, &rows);
        }
        DeviceCommand::Update {
            id,
            status,
            status_reason,
            etag,
        } => {
            let mut description = hub.get_device(id).await?;
            if let Some(status) = status {
                description.status = Some(match status {
                    Status::Enabled => DeviceStatus::Enabled,
                    Status::Disabled => DeviceStatus::Disabled,
                });
            }
            if status_reason.is_some() {
                description.status_reason.clone_from(status_reason);
            }
            let condition = etag.clone().or_else(|| description.etag.clone());
            let updated = hub.put_device(&description, condition.as_deref()).await?;
            printer.document(&to_json(&updated));
        }
        DeviceCommand::Delete { id, etag } => {
            hub.delete_device(id, etag.as_deref()).await?;
            printer.line(&format!("deleted {id}"), &json!({"deleted": id}));
        }
        DeviceCommand::RenewKey { id, key } => {
            let mut description = hub.get_device(id).await?;
            let current = description
                .authentication
                .as_ref()
                .and_then(|a| a.symmetric_key.clone())
                .unwrap_or_default();
            let fresh = || Some(SymmetricKey::generate().to_base64());
            let pair = match key {
                KeySlot::Primary => SymmetricKeyPair {
                    primary_key: fresh(),
                    ..current
                },
                KeySlot::Secondary => SymmetricKeyPair {
                    secondary_key: fresh(),
                    ..current
                },
                KeySlot::Both => SymmetricKeyPair {
                    primary_key: fresh(),
                    secondary_key: fresh(),
                },
            };
            description.authentication = Some(Authentication {
                kind: AuthenticationType::Sas,
                symmetric_key: Some(pair),
                x509_thumbprint: None,
            });
            let etag = description.etag.clone();
            let updated = hub.put_device(&description, etag.as_deref()).await?;
            printer.document(&to_json(&updated));
        }
        DeviceCommand::Import { file, format, mode } => {
            import(hub, file, *format, *mode, printer).await?;
        }
        DeviceCommand::Export { file, format } => export(hub, file.as_deref(), *format).await?,
    }
    Ok(())
}

/// One device in an import or export file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceLine {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

fn format_of(path: &std::path::Path, format: Option<FileFormat>) -> FileFormat {
    format.unwrap_or_else(|| {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            FileFormat::Csv
        } else {
            FileFormat::Jsonl
        }
    })
}

/// Reads an import file; a line that does not parse is an error naming its line.
pub fn read_lines(path: &std::path::Path, format: FileFormat) -> Result<Vec<DeviceLine>, CliError> {
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    let mut lines = Vec::new();
    match format {
        FileFormat::Jsonl => {
            for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let device: DeviceLine = serde_json::from_str(&line).map_err(|e| {
                    CliError::Usage(format!("{}:{}: {e}", path.display(), number + 1))
                })?;
                lines.push(device);
            }
        }
        FileFormat::Csv => {
            let mut reader = csv::Reader::from_reader(file);
            for (number, record) in reader.deserialize::<DeviceLine>().enumerate() {
                let device = record.map_err(|e| {
                    CliError::Usage(format!("{}: record {}: {e}", path.display(), number + 1))
                })?;
                lines.push(device);
            }
        }
    }
    Ok(lines)
}

async fn import(
    hub: &ServiceClient,
    path: &std::path::Path,
    format: Option<FileFormat>,
    mode: ImportAs,
    printer: &Printer,
) -> Result<(), CliError> {
    let lines = read_lines(path, format_of(path, format))?;
    let mut operations = Vec::with_capacity(lines.len());
    for line in &lines {
        let status = match line.status.as_deref() {
            None | Some("") => None,
            Some("enabled") => Some(DeviceStatus::Enabled),
            Some("disabled") => Some(DeviceStatus::Disabled),
            Some(other) => {
                return Err(CliError::Usage(format!(
                    "device {}: status {other:?} is neither enabled nor disabled",
                    line.id
                )));
            }
        };
        let authentication = (line.primary_key.is_some() || line.secondary_key.is_some())
            .then(|| keys(line.primary_key.as_deref(), line.secondary_key.as_deref()))
            .transpose()?;
        operations.push(ExportImportDevice {
            id: parse_id(&line.id)?,
            import_mode: match mode {
                ImportAs::Create => ImportMode::Create,
                ImportAs::Update => ImportMode::Update,
                ImportAs::Delete => ImportMode::Delete,
            },
            etag: None,
            status,
            status_reason: None,
            authentication,
            capabilities: None,
        });
    }
    let bar = (!printer.json()).then(|| indicatif::ProgressBar::new(operations.len() as u64));
    let mut failed = Vec::new();
    for chunk in operations.chunks(IMPORT_CHUNK) {
        let result = hub.bulk(chunk).await?;
        failed.extend(result.errors);
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = json!({
        "devices": operations.len(),
        "applied": operations.len() - failed.len(),
        "failed": failed,
    });
    printer.line(
        &format!(
            "{} devices: {} applied, {} failed{}",
            operations.len(),
            operations.len() - failed.len(),
            failed.len(),
            failed
                .iter()
                .map(|e| format!("\n  {}: {} {}", e.device_id, e.error_code, e.error_status))
                .collect::<String>()
        ),
        &summary,
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Refused(format!(
            "{} of {} devices were not imported",
            failed.len(),
            operations.len()
        )))
    }
}

async fn export(
    hub: &ServiceClient,
    path: Option<&std::path::Path>,
    format: FileFormat,
) -> Result<(), CliError> {
    let mut out: Box<dyn Write> = match path {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut csv = match format {
        FileFormat::Csv => Some(csv::Writer::from_writer(Vec::new())),
        FileFormat::Jsonl => None,
    };
    let mut continuation: Option<String> = None;
    let mut exported = 0usize;
    loop {
        let (page, next) = hub.list_devices(1000, continuation.as_deref()).await?;
        for device in page {
            let keys = device
                .authentication
                .and_then(|a| a.symmetric_key)
                .unwrap_or_default();
            let line = DeviceLine {
                id: device.device_id.map(|d| d.to_string()).unwrap_or_default(),
                status: device.status.map(|s| {
                    serde_json::to_value(s)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                }),
                primary_key: keys.primary_key,
                secondary_key: keys.secondary_key,
            };
            match csv.as_mut() {
                Some(writer) => writer
                    .serialize(&line)
                    .map_err(|e| CliError::Usage(e.to_string()))?,
                None => writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default())?,
            }
            exported += 1;
        }
        match next {
            Some(token) => continuation = Some(token),
            None => break,
        }
    }
    if let Some(writer) = csv {
        let bytes = writer
            .into_inner()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        out.write_all(&bytes)?;
    }
    out.flush()?;
    if path.is_some() {
        eprintln!("{exported} devices exported");
    }
    Ok(())
}
