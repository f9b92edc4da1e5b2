// Public face of extorport: the Extended ORPort protocol (SAFE_COOKIE authentication and
// command framing, both sides) as pure state machines, cookie files, and thin socket glue.
// bridgectl itself needs only the cookie files (the native engine speaks the protocol); the
// handshakes, framing and dialing are the client and fake server that tests and bench/ drive.
export { CMD, serverHash, clientHash, encodeCommand, decodeCommand } from './protocol.js';
export { ExtOrServerHandshake, ExtOrClientHandshake } from './handshake.js';
export { parseCookieFile, readCookieFile, writeCookieFile, createCookieFile } from './cookie-file.js';
export { ExtOrError, driveHandshake, serverHandshake, transportCommands, dialExtOr } from './socket.js';
