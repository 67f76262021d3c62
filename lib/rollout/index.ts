export * from './sequences.js';
export * from './generate.js';
export * from './environment.js';
