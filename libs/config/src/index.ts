export { ROLES, CONFIG_VARIABLES, ConfigError, loadConfig, rolesFromArgv } from './config.ts';
export type { Role, Config, Env, TrustProxy } from './config.ts';
