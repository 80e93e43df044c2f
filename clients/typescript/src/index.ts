export * from "./client.js";
export type * from "./models.js";
