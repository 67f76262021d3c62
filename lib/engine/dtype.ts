/** Element types, mirroring native/core/dtype.h (a test compares the two tables). */
export const DTYPES = [
  { name: 'f32', size: 4 },
  { name: 'bf16', size: 2 },
  { name: 'f16', size: 2 },
  { name: 'i32', size: 4 },
] as const;
export type DType = (typeof DTYPES)[number]['name'];
