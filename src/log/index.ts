// Public face of logging: one logger whose lines fit where stdout goes (journal, terminal, JSON).
export { makeLogger, printError, formatFor } from './logger.js';
export { formatLine, formatError, chooseFormat, syslogPriority, childLineLevel, type LogFormat } from './format.js';
