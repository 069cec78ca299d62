// What kind of JS realm this is. One place, so no module needs core.js just for this.

/** True in Node (not in a browser page or a browser worker). */
export const isNode = typeof process !== 'undefined' && !!(process.versions && process.versions.node) &&
  typeof window === 'undefined' && typeof self === 'undefined';
