// Drives the hub with Azure's own Node.js SDKs, unchanged: the service SDK's Registry (REST) creates
// and reads a device; the device SDK's Client over the HTTP transport sends one message and one
// batch. Prints a JSON summary on stdout; the Rust test checks what reached Kinesis.
//
// Env: OWNER_CONNECTION_STRING, DEVICE_ID; NODE_EXTRA_CA_CERTS trusts the gateway's certificate.
'use strict';

const { Registry } = require('azure-iothub');
const { Client, Message } = require('azure-iot-device');
const { Http } = require('azure-iot-device-http');

async function main() {
  const owner = process.env.OWNER_CONNECTION_STRING;
  const deviceId = process.env.DEVICE_ID;
  const hostName = /HostName=([^;]+)/.exec(owner)[1];

  const registry = Registry.fromConnectionString(owner);
  const created = await registry.create({ deviceId, status: 'enabled' });
  const fetched = await registry.get(deviceId);
  const key = fetched.responseBody.authentication.symmetricKey.primaryKey;

  const client = Client.fromConnectionString(`HostName=${hostName};DeviceId=${deviceId};SharedAccessKey=${key}`, Http);
  await client.open();

  const message = new Message(JSON.stringify({ temperature: 21.5 }));
  message.messageId = 'node-single';
  message.correlationId = 'node-correlation';
  message.contentType = 'application/json';
  message.contentEncoding = 'utf-8';
  message.properties.add('unit', 'celsius');
  await client.sendEvent(message);

  const batch = [0, 1, 2].map((i) => {
    const m = new Message(`reading ${i}`);
    m.properties.add('index', String(i));
    return m;
  });
  await client.sendEventBatch(batch);
  await client.close();

  let refused = null;
  const stranger = Client.fromConnectionString(
    `HostName=${hostName};DeviceId=${deviceId};SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`,
    Http,
  );
  try {
    await stranger.sendEvent(new Message('must not arrive'));
  } catch (error) {
    refused = error.constructor.name;
  }

  console.log(JSON.stringify({
    createdStatus: created.httpResponse.statusCode,
    generationId: fetched.responseBody.generationId,
    refusedWith: refused,
  }));
}

// The SDK clients leave timers behind (e.g. the HTTP transport's receive polling), so exit explicitly.
main().then(() => process.exit(0), (error) => {
  console.error(error && error.stack ? error.stack : error);
  if (error && error.responseBody) console.error(error.responseBody);
  process.exit(1);
});
