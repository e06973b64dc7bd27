// The pure uwsgi codec: no sockets, timers, loggers or process.
export * from './decoder.js';
export * from './encoder.js';
export * from './vars.js';
