// Drives the hub with Azure's own Node.js SDKs, unchanged: the service SDK's Registry (REST) creates
// and reads a device; the device SDK's Client over the HTTP transport sends one message and one
// batch. Prints a JSON summary on stdout; the Rust test checks what reached Kinesis.
//
// Phase `register-and-send` (default) does the above; phase `receive` reads the device's key through
// the registry and lets the device client's HTTP receiver (polling every second) receive and
// complete one cloud-to-device message; phase `registry` manages devices and twins with the
// service SDK's Registry: update, bulk add/update/remove, list, statistics, twin get and update
// (with a stale etag refused), twin queries paged and counted, delete; phase `jobs` runs a twin
// job with the JobClient (below).
//
// Env: OWNER_CONNECTION_STRING, DEVICE_ID, PHASE; NODE_EXTRA_CA_CERTS trusts the gateway's certificate.
'use strict';

const { Registry, Client: ServiceClient, JobClient } = require('azure-iothub');
const { Client, Message } = require('azure-iot-device');
const { Http } = require('azure-iot-device-http');

async function receiveOne() {
  const owner = process.env.OWNER_CONNECTION_STRING;
  const deviceId = process.env.DEVICE_ID;
  const hostName = /HostName=([^;]+)/.exec(owner)[1];
  const registry = Registry.fromConnectionString(owner);
  const key = (await registry.get(deviceId)).responseBody.authentication.symmetricKey.primaryKey;
  const client = Client.fromConnectionString(`HostName=${hostName};DeviceId=${deviceId};SharedAccessKey=${key}`, Http);
  await client.setOptions({ http: { receivePolicy: { interval: 1 } } });
  const received = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no cloud-to-device message within 30 s')), 30000);
    client.on('error', reject);
    client.on('message', (message) => {
      client.complete(message, (error) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(message);
      });
    });
    client.open().catch(reject);
  });
  console.log(JSON.stringify({
    body: received.getData().toString(),
    messageId: received.messageId,
    correlationId: received.correlationId,
    properties: received.properties.propertyList,
  }));
}

async function errorName(promise) {
  try {
    await promise;
    return null;
  } catch (error) {
    return error.constructor.name;
  }
}

async function manageRegistry() {
  const registry = Registry.fromConnectionString(process.env.OWNER_CONNECTION_STRING);
  const [first, second, third] = [1, 2, 3].map((i) => `${process.env.DEVICE_ID}-${i}`);
  const summary = {};

  const created = (await registry.create({ deviceId: first })).responseBody;
  const updated = (await registry.update({ ...created, status: 'disabled', statusReason: 'sdk' })).responseBody;
  summary.updated = { status: updated.status, statusReason: updated.statusReason, etagChanged: updated.etag !== created.etag };

  summary.bulkAdd = (await registry.addDevices([{ deviceId: second }, { deviceId: third }, { deviceId: first }])).responseBody;
  summary.bulkUpdate = (await registry.updateDevices([
    { deviceId: second, status: 'disabled', eTag: 'not-the-etag' },
  ], false)).responseBody;
  summary.bulkForcedUpdate = (await registry.updateDevices([{ deviceId: third, status: 'disabled' }], true)).responseBody;
  summary.thirdStatus = (await registry.get(third)).responseBody.status;

  const listed = (await registry.list()).responseBody;
  summary.listed = { isArray: Array.isArray(listed), allHaveIds: listed.every((d) => typeof d.deviceId === 'string') };
  summary.statistics = (await registry.getRegistryStatistics()).responseBody;

  const twin = (await registry.getTwin(first)).responseBody;
  const staleEtag = twin.etag;
  summary.twinBefore = { version: twin.properties.desired.$version, tags: twin.tags };
  await twin.update({ tags: { site: 'sdk' }, properties: { desired: { rate: 3 } } });
  summary.twinAfter = { version: twin.properties.desired.$version, tags: twin.tags, rate: twin.properties.desired.rate };
  summary.staleTwinUpdate = await errorName(registry.updateTwin(first, { tags: { late: true } }, staleEtag));

  // Twin queries, a page of 2 at a time, as the SDK pages them (x-ms-continuation).
  const run = process.env.DEVICE_ID;
  for (const id of [first, second, third]) await registry.updateTwin(id, { tags: { sdkRun: run } }, '*');
  const query = registry.createQuery(`SELECT * FROM devices WHERE tags.sdkRun = '${run}'`, 2);
  const found = [];
  let pages = 0;
  while (query.hasMoreResults) {
    const page = (await query.nextAsTwin()).result;
    pages += 1;
    found.push(...page.map((t) => t.deviceId));
  }
  summary.query = { pages, found: found.sort() };
  const counted = (await registry.createQuery(`SELECT COUNT() AS devices FROM devices WHERE tags.sdkRun = '${run}'`).next()).result;
  summary.queryCount = counted;
  summary.badQuery = await errorName(registry.createQuery('SELECT * FROM devices WHERE').next());

  summary.bulkRemove = (await registry.removeDevices([{ deviceId: second }, { deviceId: third }], true)).responseBody;
  await registry.delete(first);
  summary.afterDelete = await errorName(registry.get(first));
  summary.secondAfterRemove = await errorName(registry.get(second));
  console.log(JSON.stringify(summary));
}

// Phase `method`: the service SDK's Client invokes a direct method (REST) that the Rust test's
// device answers over the hub's HTTPS extension, then one that no device takes.
async function invokeMethod() {
  const client = ServiceClient.fromConnectionString(process.env.OWNER_CONNECTION_STRING);
  const deviceId = process.env.DEVICE_ID;
  const answered = (await client.invokeDeviceMethod(deviceId, {
    methodName: 'reboot', payload: { delay: 1 }, responseTimeoutInSeconds: 15, connectTimeoutInSeconds: 10,
  })).result;
  let unanswered = null;
  try {
    await client.invokeDeviceMethod(deviceId, {
      methodName: 'reboot', payload: null, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 0,
    });
  } catch (error) {
    unanswered = { name: error.constructor.name, message: String(error.message) };
  }
  console.log(JSON.stringify({ answered, unanswered }));
}

// Phase `jobs`: the service SDK's JobClient schedules a twin update over the devices tagged
// `jobRun = DEVICE_ID` (the Rust test made them), waits for it with getJob, finds it with
// createQuery by type and status, and cancels a scheduled one.
async function runJobs() {
  const owner = process.env.OWNER_CONNECTION_STRING;
  const run = process.env.DEVICE_ID;
  const jobs = JobClient.fromConnectionString(owner);
  const jobId = `${run}-twin`;
  const scheduled = (await jobs.scheduleTwinUpdate(jobId, `tags.jobRun = '${run}'`,
    { etag: '*', properties: { desired: { sdkJob: run } } }, new Date(), 300)).jobStatus;
  let job = scheduled;
  const deadline = Date.now() + 60000;
  while (job.status !== 'completed' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    job = (await jobs.getJob(jobId)).jobStatus;
  }
  const listed = [];
  const query = jobs.createQuery('scheduleUpdateTwin', 'completed', 50);
  while (query.hasMoreResults) listed.push(...(await query.next()).result.map((j) => j.jobId));
  const laterId = `${run}-later`;
  await jobs.scheduleTwinUpdate(laterId, `tags.jobRun = '${run}'`, { tags: { late: true } },
    new Date(Date.now() + 3600000), 60);
  const cancelled = (await jobs.cancelJob(laterId)).jobStatus;
  const registry = Registry.fromConnectionString(owner);
  const twins = (await registry.createQuery(`SELECT * FROM devices WHERE tags.jobRun = '${run}'`).nextAsTwin()).result;
  const perDevice = (await registry.createQuery(`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${jobId}'`).next()).result;
  console.log(JSON.stringify({
    scheduledStatus: scheduled.status,
    status: job.status,
    statistics: job.deviceJobStatistics,
    listed: listed.includes(jobId),
    cancelled: cancelled.status,
    desired: twins.map((t) => t.properties.desired.sdkJob),
    perDevice: perDevice.map((d) => d.status),
  }));
}

async function main() {
  if (process.env.PHASE === 'jobs') return runJobs();
  if (process.env.PHASE === 'receive') return receiveOne();
  if (process.env.PHASE === 'method') return invokeMethod();
  if (process.env.PHASE === 'registry') return manageRegistry();
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
