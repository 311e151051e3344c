#!/usr/bin/env node
// A Node.js client of the cfgclone services, built from the .proto files at run time.
//
//   node cfgclone-client.js systems --collector HOST:PORT [--selector role=db]
//   node cfgclone-client.js clone --orchestrator HOST:PORT --source systems/a \
//       --target systems/b [--target systems/c] [--dry-run] [--watch]
//
// Results are printed to stdout as JSON in the protobuf JSON mapping (camelCase
// fields, enum names, 64-bit integers as strings, RFC 3339 timestamps, default
// values left out). Exit codes are those of the `cfgclone` CLI: 0 success (a
// watched clone: every target kept); 1 failed: the call was refused (its gRPC
// status code, message and error details, the ErrorInfo reason and BadRequest
// field violations, go to stderr) or the watched operation ended failed or
// cancelled (printed, its error on stderr); 2 bad usage; 3 a service
// unreachable; 4 a target rejected; 5 a target rolled back; 6 a target held for
// an operator. When targets end differently the most serious outcome decides,
// in the order failed, rolled back, rejected, held.
//
// CFGCLONE_TOKEN (or --token) is sent as `authorization: Bearer <token>`.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const REPOSITORY = path.resolve(__dirname, '..', '..');
const INCLUDE_DIRS = [
  path.join(REPOSITORY, 'protos'),
  path.join(REPOSITORY, 'third_party', 'googleapis'),
];
const PROTO_FILES = [
  'cfgclone/v1/collector_service.proto',
  'cfgclone/v1/orchestrator_service.proto',
  'google/rpc/status.proto',
];
// How proto-loader turns messages into objects; toJson below finishes the JSON mapping.
const OBJECT_OPTIONS = {
  keepCase: false,
  longs: String,
  enums: String,
  bytes: String,
  defaults: false,
  oneofs: false,
  json: true,
};

const USAGE = `usage:
  node cfgclone-client.js systems --collector HOST:PORT [--selector KEY=VALUE,...] [--page-size N]
  node cfgclone-client.js clone --orchestrator HOST:PORT --source systems/ID
      (--target systems/ID ... | --selector KEY=VALUE,...) [--dry-run] [--watch]
      [--request-id ID]
common options: [--token TOKEN] [--timeout SECONDS]
`;

class UsageError extends Error {}

// Exit codes, as the cfgclone CLI's (services/cli/exits.py).
const EXIT = { ok: 0, failed: 1, usage: 2, unavailable: 3, rejected: 4, rolledBack: 5, held: 6 };
const UNAVAILABLE = 14; // gRPC status code
const STATE_EXITS = {
  CHANGE_STATE_FAILED: EXIT.failed,
  CHANGE_STATE_ROLLED_BACK: EXIT.rolledBack,
  CHANGE_STATE_REJECTED: EXIT.rejected,
  CHANGE_STATE_HELD: EXIT.held,
};
const SEVERITY = [EXIT.failed, EXIT.rolledBack, EXIT.rejected, EXIT.held];

// The exit code of a printed operation: its targets' most serious outcome, else how it ended.
function operationExitCode(json) {
  if (json.error) return json.error.code === UNAVAILABLE ? EXIT.unavailable : EXIT.failed;
  const targets = (json.clone && json.clone.targets) || [];
  const codes = new Set(targets.map((t) => STATE_EXITS[t.state] || EXIT.ok));
  const worst = SEVERITY.find((code) => codes.has(code));
  if (worst !== undefined) return worst;
  if (json.done && json.state !== 'OPERATION_STATE_SUCCEEDED') return EXIT.failed;
  return EXIT.ok;
}

// --- arguments -------------------------------------------------------------

const OPTIONS = {
  '--collector': 'value',
  '--orchestrator': 'value',
  '--selector': 'value',
  '--page-size': 'value',
  '--source': 'value',
  '--target': 'list',
  '--request-id': 'value',
  '--token': 'value',
  '--timeout': 'value',
  '--dry-run': 'flag',
  '--watch': 'flag',
  '--help': 'flag',
};

function parseArguments(argv) {
  const parsed = { command: undefined, target: [] };
  for (let i = 0; i < argv.length; i += 1) {
    let arg = argv[i];
    let inline;
    if (arg.startsWith('--') && arg.includes('=')) {
      inline = arg.slice(arg.indexOf('=') + 1);
      arg = arg.slice(0, arg.indexOf('='));
    }
    if (arg === '-h') arg = '--help';
    const kind = OPTIONS[arg];
    if (!arg.startsWith('-')) {
      if (parsed.command !== undefined) throw new UsageError(`unexpected argument ${arg}`);
      parsed.command = arg;
      continue;
    }
    if (kind === undefined) throw new UsageError(`unknown option ${arg}`);
    const key = arg.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (kind === 'flag') {
      if (inline !== undefined) throw new UsageError(`${arg} takes no value`);
      parsed[key] = true;
      continue;
    }
    let value = inline;
    if (value === undefined) {
      i += 1;
      if (i >= argv.length) throw new UsageError(`${arg} needs a value`);
      value = argv[i];
    }
    if (kind === 'list') parsed[key].push(value);
    else parsed[key] = value;
  }
  return parsed;
}

function required(args, key) {
  const value = args[key];
  if (value === undefined || value === '') {
    const option = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    throw new UsageError(`${args.command} needs --${option}`);
  }
  return value;
}

function positiveNumber(text, option) {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new UsageError(`${option} must be a positive number (got ${text})`);
  }
  return value;
}

// --- protos ----------------------------------------------------------------

function loadServices() {
  const definition = protoLoader.loadSync(PROTO_FILES, {
    ...OBJECT_OPTIONS,
    includeDirs: INCLUDE_DIRS,
  });
  return grpc.loadPackageDefinition(definition).cfgclone.v1;
}

// The same files as a protobufjs root, to walk the types when printing JSON and to
// decode error details. ErrorInfo and BadRequest (google/rpc/error_details.proto) are
// declared here, since only status.proto is vendored.
function loadTypes() {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    for (const dir of INCLUDE_DIRS) {
      const candidate = path.join(dir, target);
      if (fs.existsSync(candidate)) return candidate;
    }
    return protobuf.util.path.resolve(origin, target);
  };
  root.loadSync(PROTO_FILES, { keepCase: false });
  root.define('google.rpc').addJSON({
    ErrorInfo: {
      fields: {
        reason: { type: 'string', id: 1 },
        domain: { type: 'string', id: 2 },
        metadata: { keyType: 'string', type: 'string', id: 3 },
      },
    },
    BadRequest: {
      fields: { fieldViolations: { rule: 'repeated', type: 'FieldViolation', id: 1 } },
      nested: {
        FieldViolation: {
          fields: {
            field: { type: 'string', id: 1 },
            description: { type: 'string', id: 2 },
          },
        },
      },
    },
  });
  root.resolveAll();
  return root;
}

// --- JSON ------------------------------------------------------------------

function timestampJson(value) {
  const seconds = Number(value.seconds || 0);
  const nanos = Number(value.nanos || 0);
  const text = new Date(seconds * 1000).toISOString().replace('.000Z', '');
  if (nanos === 0) return `${text}Z`;
  let fraction = String(nanos).padStart(9, '0');
  while (fraction.endsWith('000')) fraction = fraction.slice(0, -3);
  return `${text}.${fraction}Z`;
}

function durationJson(value) {
  const seconds = BigInt(value.seconds || 0);
  const nanos = Number(value.nanos || 0);
  if (nanos === 0) return `${seconds}s`;
  const negative = seconds < 0n || nanos < 0;
  let fraction = String(Math.abs(nanos)).padStart(9, '0');
  while (fraction.endsWith('000')) fraction = fraction.slice(0, -3);
  const whole = seconds < 0n ? -seconds : seconds;
  return `${negative ? '-' : ''}${whole}.${fraction}s`;
}

function valueJson(value) {
  if (value.structValue !== undefined) return structJson(value.structValue);
  if (value.listValue !== undefined) return (value.listValue.values || []).map(valueJson);
  if (value.numberValue !== undefined) return value.numberValue;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  return null;
}

function structJson(value) {
  const out = {};
  for (const [key, item] of Object.entries(value.fields || {})) out[key] = valueJson(item);
  return out;
}

// The JSON mapping of a message object as proto-loader decodes it, guided by its type.
function toJson(root, type, value) {
  switch (type.fullName) {
    case '.google.protobuf.Timestamp':
      return timestampJson(value);
    case '.google.protobuf.Duration':
      return durationJson(value);
    case '.google.protobuf.Struct':
      return structJson(value);
    case '.google.protobuf.Value':
      return valueJson(value);
    case '.google.protobuf.ListValue':
      return (value.values || []).map(valueJson);
    case '.google.protobuf.Any':
      return anyJson(root, value);
    default:
      break;
  }
  const out = {};
  for (const [key, item] of Object.entries(value)) {
    const field = type.fields[key];
    if (field === undefined || !(field.resolvedType instanceof protobuf.Type)) {
      out[key] = item;
    } else if (field.map) {
      out[key] = Object.fromEntries(
        Object.entries(item).map(([k, v]) => [k, toJson(root, field.resolvedType, v)]),
      );
    } else if (field.repeated) {
      out[key] = item.map((element) => toJson(root, field.resolvedType, element));
    } else {
      out[key] = toJson(root, field.resolvedType, item);
    }
  }
  return out;
}

// An Any with a known type becomes {"@type": url, ...fields}; otherwise it stays as it came.
// proto-loader already expands the types it knows; the others arrive as url and base64 bytes.
function anyJson(root, value) {
  const expanded = value['@type'] !== undefined;
  const url = (expanded ? value['@type'] : value.typeUrl || value.type_url) || '';
  const type = url ? root.lookup(url.slice(url.lastIndexOf('/') + 1)) : null;
  if (!(type instanceof protobuf.Type)) return value;
  let fields;
  if (expanded) {
    fields = { ...value };
    delete fields['@type'];
  } else if (typeof value.value === 'string') {
    fields = type.toObject(type.decode(Buffer.from(value.value, 'base64')), OBJECT_OPTIONS);
  } else {
    return value;
  }
  return { '@type': url, ...toJson(root, type, fields) };
}

function messageJson(root, typeName, value) {
  return toJson(root, root.lookupType(typeName), value);
}

function print(json) {
  process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
}

// --- errors ----------------------------------------------------------------

const CODE_NAMES = Object.fromEntries(
  Object.entries(grpc.status).map(([name, number]) => [number, name]),
);

// "CODE: message" and one line per error detail, for a gRPC error or an operation's error.
function describeStatus(root, code, message, details) {
  const lines = [`${CODE_NAMES[code] || `code ${code}`}: ${message}`];
  for (const detail of details) {
    const type = (detail['@type'] || '').slice((detail['@type'] || '').lastIndexOf('/') + 1);
    if (type === 'google.rpc.ErrorInfo') {
      const metadata = Object.entries(detail.metadata || {})
        .map(([k, v]) => `${k}=${v}`)
        .join(', ');
      lines.push(`  reason: ${detail.reason || ''}${metadata ? ` (${metadata})` : ''}`);
    } else if (type === 'google.rpc.BadRequest') {
      for (const violation of detail.fieldViolations || []) {
        lines.push(`  field ${violation.field}: ${violation.description}`);
      }
    } else {
      lines.push(`  detail: ${JSON.stringify(detail)}`);
    }
  }
  return lines.join('\n');
}

function statusDetails(root, error) {
  const raw = error.metadata && error.metadata.get('grpc-status-details-bin')[0];
  if (!raw) return [];
  const statusType = root.lookupType('google.rpc.Status');
  const status = statusType.toObject(statusType.decode(raw), OBJECT_OPTIONS);
  return messageJson(root, 'google.rpc.Status', status).details || [];
}

// --- commands --------------------------------------------------------------

function callOptions(args) {
  const seconds = args.timeout === undefined ? 30 : positiveNumber(args.timeout, '--timeout');
  return { deadline: new Date(Date.now() + seconds * 1000) };
}

function metadataFor(args) {
  const metadata = new grpc.Metadata();
  const token = args.token || process.env.CFGCLONE_TOKEN;
  if (token) metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

function unary(client, method, request, metadata, options) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, options, (error, response) => {
      if (error) reject(error);
      else resolve(response);
    });
  });
}

async function listSystems(services, root, args) {
  const address = required(args, 'collector');
  const pageSize = args.pageSize === undefined ? 0 : positiveNumber(args.pageSize, '--page-size');
  const client = new services.CollectorService(address, grpc.credentials.createInsecure());
  try {
    const systems = [];
    let pageToken = '';
    do {
      const request = { pageSize, pageToken, labelSelector: args.selector || '' };
      const response = await unary(
        client, 'listSystems', request, metadataFor(args), callOptions(args),
      );
      for (const system of response.systems || []) {
        systems.push(messageJson(root, 'cfgclone.v1.System', system));
      }
      pageToken = response.nextPageToken || '';
    } while (pageToken);
    print(systems);
    return 0;
  } finally {
    client.close();
  }
}

function watch(client, name, metadata) {
  return new Promise((resolve, reject) => {
    let last = null;
    const call = client.watchOperation({ name }, metadata);
    call.on('data', (response) => {
      if (response.operation) last = response.operation;
    });
    call.on('error', reject);
    call.on('end', () => resolve(last));
  });
}

async function clone(services, root, args) {
  const address = required(args, 'orchestrator');
  const source = required(args, 'source');
  if (args.target.length === 0 && !args.selector) {
    throw new UsageError('clone needs --target (one or more) or --selector');
  }
  const request = {
    source,
    targets: args.target,
    targetSelector: args.selector || '',
    requestId: args.requestId || '',
    options: { dryRun: Boolean(args.dryRun) },
  };
  const client = new services.OrchestratorService(address, grpc.credentials.createInsecure());
  try {
    const response = await unary(
      client, 'cloneConfiguration', request, metadataFor(args), callOptions(args),
    );
    let operation = response.operation;
    if (args.watch && !operation.done) {
      const last = await watch(client, operation.name, metadataFor(args));
      if (last) operation = last;
      if (!operation.done) {
        // The stream ended before the operation did (a restart); ask where it stands.
        const got = await unary(
          client, 'getOperation', { name: operation.name }, metadataFor(args), callOptions(args),
        );
        operation = got.operation;
      }
    }
    const json = messageJson(root, 'cfgclone.v1.Operation', operation);
    print(json);
    if (json.error) {
      const error = json.error;
      process.stderr.write(
        `operation ${json.name} failed: ` +
          `${describeStatus(root, error.code || 0, error.message || '', error.details || [])}\n`,
      );
    }
    return operationExitCode(json);
  } finally {
    client.close();
  }
}

async function main(argv) {
  let args;
  try {
    args = parseArguments(argv);
    if (args.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (args.command !== 'systems' && args.command !== 'clone') {
      throw new UsageError(
        args.command === undefined ? 'name a command' : `unknown command ${args.command}`,
      );
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`error: ${error.message}\n${USAGE}`);
    return EXIT.usage;
  }
  const services = loadServices();
  const root = loadTypes();
  try {
    if (args.command === 'systems') return await listSystems(services, root, args);
    return await clone(services, root, args);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`error: ${error.message}\n${USAGE}`);
      return 2;
    }
    if (typeof error.code !== 'number') throw error;
    process.stderr.write(
      `error: ${describeStatus(root, error.code, error.details || '', statusDetails(root, error))}\n`,
    );
    return error.code === UNAVAILABLE ? EXIT.unavailable : EXIT.failed;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`error: ${error.stack || error}\n`);
    process.exitCode = 1;
  },
);
