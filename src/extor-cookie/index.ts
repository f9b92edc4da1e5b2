// Public face of extor-cookie: the Extended ORPort protocol (SAFE_COOKIE authentication and
// command framing, both sides) as pure state machines, cookie files, and thin socket glue.
export {
  AUTH_TYPE_SAFE_COOKIE,
  SERVER_AUTH_TYPES,
  NONCE_LEN,
  HASH_LEN,
  COOKIE_LEN,
  AUTH_OK,
  AUTH_FAIL,
  SERVER_TO_CLIENT_CONST,
  CLIENT_TO_SERVER_CONST,
  CMD,
  MAX_BODY_LEN,
  serverHash,
  clientHash,
  encodeCommand,
  decodeCommand,
  commandName,
  checkTransportCommand,
  parseUserAddr,
  type ExtOrCommand,
} from './protocol.js';
export {
  ExtOrServerHandshake,
  ExtOrClientHandshake,
  type Step,
  type HandshakeStatus,
  type ServerOptions,
  type ClientOptions,
} from './handshake.js';
export {
  COOKIE_FILE_HEADER,
  COOKIE_FILE_LEN,
  generateCookie,
  encodeCookieFile,
  parseCookieFile,
  readCookieFile,
  writeCookieFile,
  createCookieFile,
  type WriteCookieOptions,
} from './cookie-file.js';
export {
  ExtOrError,
  driveHandshake,
  serverHandshake,
  clientHandshake,
  transportCommands,
  dialExtOr,
  type ServerHandshakeResult,
  type ClientHandshakeResult,
  type DialOptions,
} from './socket.js';
